"""Questions about a group's mail; nothing here writes.

The group's page is its members' only: `group_of_member` answers who may see it, and the page
shows first names and time zones, never an address (the group's own address aside).
"""

import datetime
import zoneinfo
from dataclasses import dataclass

from django.core.paginator import Page, Paginator

from cohorts.models import StudyGroup
from cohorts.selectors import study_group_by_slug
from groupmail.models import GroupMailClosure, GroupMailMute, GroupMessage
from signups.selectors import group_mail_members

MESSAGES_PER_PAGE = 20


def _group_and_members(learner_id: int, group_slug: str):
    group = study_group_by_slug(group_slug)
    if group is None:
        return None, []
    members = group_mail_members(group.pk)
    if not any(member.learner_id == learner_id for member in members):
        return None, []
    return group, members


def group_of_member(learner_id: int, group_slug: str) -> StudyGroup | None:
    """The group at `group_slug` if the learner is a current member of it (a confirmed learner
    whose active or paused enrollment is in it), else None: whether the group exists or not,
    a non-member learns nothing. Two queries."""
    return _group_and_members(learner_id, group_slug)[0]


def learner_zone(timezone_name: str) -> datetime.tzinfo:
    """The learner's time zone; UTC for a name we no longer know (an old import, say)."""
    try:
        return zoneinfo.ZoneInfo(timezone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return datetime.UTC


def receiving_muted(group_id: int, learner_id: int) -> bool:
    """Whether the learner chose to receive none of this group's mail."""
    return GroupMailMute.objects.filter(group_id=group_id, learner_id=learner_id, kind=GroupMailMute.Kind.RECEIVING).exists()


@dataclass(frozen=True)
class GroupMember:
    first_name: str
    timezone: str
    is_viewer: bool


@dataclass(frozen=True)
class GroupPage:
    """A group's page as one of its members sees it. `messages` is a page of the archive
    (relayed messages, newest first), each with `sender.first_name`, `subject`, `received_at`
    and `body_text` loaded, and nothing else of the message (never its raw bytes)."""

    group: StudyGroup
    address: str  # "" when group mail is off on this site
    closed: bool
    muted: bool  # the learner chose to receive none of its mail
    receives_mail: bool  # the learner's emails are on (not paused, not stopped): else none of the group's reach them either
    members: list[GroupMember]
    messages: Page


def group_page(learner_id: int, group_slug: str, page_number: int | str = 1) -> GroupPage | None:
    """The page of the group at `group_slug` as the learner sees it, or None when they are not
    a current member (group_of_member). Six queries, whatever the group's size and its
    archive's: the group, its members, its closure, the mute, the count and the messages."""
    group, members = _group_and_members(learner_id, group_slug)
    if group is None:
        return None
    archive = (
        GroupMessage.objects.filter(group=group, status=GroupMessage.Status.RELAYED)
        .select_related("sender")
        .only("subject", "body_text", "received_at", "sender__first_name")
        .order_by("-received_at", "-pk")
    )
    return GroupPage(
        group=group,
        address=group.mail_address,
        closed=GroupMailClosure.objects.filter(group=group).exists(),
        muted=receiving_muted(group.pk, learner_id),
        receives_mail=next(member.receives for member in members if member.learner_id == learner_id),
        members=[
            GroupMember(first_name=member.first_name or "A classmate", timezone=member.timezone, is_viewer=member.learner_id == learner_id)
            for member in members
        ],
        messages=Paginator(archive, MESSAGES_PER_PAGE).get_page(page_number),
    )
