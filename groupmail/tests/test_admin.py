"""Organizers in the admin, logged in through the real login form as each staff role: group
messages (metadata only, never a member's words or address), held ones relayed or discarded,
senders muted, groups' mail closed. Other roles are offered nothing and change nothing."""

import re
from dataclasses import dataclass

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cohorts.models import StudyGroup
from groupmail.inbound import inbound_receive
from groupmail.models import GroupMailClosure, GroupMailMute, GroupMessage
from groupmail.services import group_mail_close, member_mute
from groupmail.tests.conftest import IN_WEEK_1
from groupmail.tests.messages import raw_message
from mooc.permissions import COURSE_EDITOR, ORGANIZER, VIEWER
from mooc.tests.test_staff_roles import NO_ROLE, PASSWORD, log_in
from scheduler.models import Delivery, EmailKind
from signups.models import Learner
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.clock(IN_WEEK_1)]

POSTING = GroupMailMute.Kind.POSTING
MESSAGES = "admin:groupmail_groupmessage_changelist"
MAILBOXES = "admin:groupmail_groupmailbox_changelist"
WORDS = "Hi all, this is what Ada wrote."


@pytest.fixture
def held(study_group, clock):
    """Ada's message, held: an organizer had muted her posting (then lifted it, so that muting works again)."""
    ada = Learner.objects.get(email="ada@example.org")
    member_mute(study_group.pk, ada.pk, POSTING, clock.now())
    inbound_receive(raw_message(body=WORDS + "\n"), esp="test", now=clock.now(), envelope_recipients=["winter-3@groups.example.org"])
    GroupMailMute.objects.all().delete()
    message = GroupMessage.objects.get()
    assert message.status == GroupMessage.Status.HELD and message.hold_reason == GroupMessage.HoldReason.MUTED
    return message


@dataclass
class Action:
    changelist: str
    name: str
    prepare: object  # (group, message, clock) -> None: the state the action changes
    effect: object  # (group, message) -> whether it did its work


def _nothing(group, message, clock):
    pass


def _posting_muted(group, message, clock):
    member_mute(group.pk, message.sender_id, POSTING, clock.now())


def _closed(group, message, clock):
    group_mail_close(group.pk, clock.now())


def _status(message):
    return GroupMessage.objects.get(pk=message.pk).status


ACTIONS = [
    Action(MESSAGES, "relay_held", _nothing, lambda group, message: _status(message) == GroupMessage.Status.RELAYED
           and Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE, relayed_message=message.pk).count() == 3),
    Action(MESSAGES, "discard_held", _nothing, lambda group, message: _status(message) == GroupMessage.Status.DISCARDED
           and GroupMessage.objects.get(pk=message.pk).body_text == ""),
    Action(MESSAGES, "mute_senders", _nothing, lambda group, message: GroupMailMute.objects.filter(
        group=group, learner_id=message.sender_id, kind=POSTING).exists()),
    Action(MESSAGES, "unmute_senders", _posting_muted, lambda group, message: not GroupMailMute.objects.exists()),
    Action(MAILBOXES, "close_mail", _nothing, lambda group, message: GroupMailClosure.objects.filter(group=group).exists()),
    Action(MAILBOXES, "reopen_mail", _closed, lambda group, message: not GroupMailClosure.objects.exists()),
]


def _offered(client, action: Action):
    response = client.get(reverse(action.changelist))
    return response.status_code, f'value="{action.name}"' in response.content.decode()


def _run(client, action: Action, target_id: int):
    return client.post(
        reverse(action.changelist), {"action": action.name, "index": "0", ACTION_CHECKBOX_NAME: [target_id]}, follow=True
    )


@pytest.mark.parametrize("action", ACTIONS, ids=lambda action: action.name)
@pytest.mark.parametrize("role", [ORGANIZER, COURSE_EDITOR, VIEWER, NO_ROLE])
def test_each_action_is_offered_to_and_run_by_organizers_only(role, action, study_group, held, clock):
    action.prepare(study_group, held, clock)
    client = log_in(role)
    allowed = role == ORGANIZER

    status, offered = _offered(client, action)
    response = _run(client, action, held.pk if action.changelist == MESSAGES else study_group.pk)

    assert offered is allowed
    assert action.effect(study_group, held) is allowed
    if allowed:
        assert status == response.status_code == 200
    else:  # they may not see the lists at all: the forged post is refused
        assert status == response.status_code == 403


def test_who_may_only_read_group_messages_is_offered_no_action_and_changes_nothing(study_group, held):
    reader = User.objects.create_user("reader", "reader@staff.example", PASSWORD, is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_groupmessage"))
    client = Client()
    client.login(username="reader", password=PASSWORD)

    for action in ACTIONS:
        status, offered = _offered(client, action)
        assert status == 200 and not offered, action.name
        _run(client, action, held.pk if action.changelist == MESSAGES else study_group.pk)

    assert _status(held) == GroupMessage.Status.HELD
    assert not GroupMailMute.objects.exists() and not GroupMailClosure.objects.exists()


def test_the_messages_list_and_page_show_metadata_never_words_or_addresses(study_group, held):
    client = log_in(ORGANIZER)

    listed = client.get(reverse(MESSAGES), {"status": "held"}).content.decode()
    page = client.get(reverse("admin:groupmail_groupmessage_change", args=[held.pk])).content.decode()

    ada = reverse("admin:signups_learner_change", args=[held.sender_id])
    for shown in (listed, page):
        assert "Hello group" in shown and "Group 3" in shown and f'<a href="{ada}">Ada</a>' in shown
        assert "Held for review" in shown and "An organizer muted this member" in shown
        assert WORDS not in shown and "ada@example.org" not in shown and held.message_id not in shown
    assert "1 group message" in listed
    # Held first among the statuses to filter by.
    assert listed.index("?status=held") < listed.index("?status=relayed") < listed.index("?status=discarded")


def test_the_messages_list_filters_by_status_and_cohort(study_group, held, clock):
    inbound_receive(raw_message(subject="Relayed one"), esp="test", now=clock.now(), envelope_recipients=["winter-3@groups.example.org"])
    client = log_in(ORGANIZER)

    held_only = client.get(reverse(MESSAGES), {"status": "held"}).content.decode()
    relayed_only = client.get(reverse(MESSAGES), {"status": "relayed"}).content.decode()
    in_cohort = client.get(reverse(MESSAGES), {"group__cohort__id__exact": study_group.cohort_id}).content.decode()

    assert "Hello group" in held_only and "Relayed one" not in held_only
    assert "Relayed one" in relayed_only and "Hello group" not in relayed_only
    assert "Relayed one" in in_cohort and "Hello group" in in_cohort


def test_the_mailbox_list_shows_each_groups_address_members_and_traffic(study_group, held, clock, django_assert_max_num_queries):
    client = log_in(ORGANIZER)

    with django_assert_max_num_queries(12):
        listed = client.get(reverse(MAILBOXES)).content.decode()

    row = re.search(r"<tr[^>]*>((?:(?!</tr>).)*winter-3@groups\.example\.org.*?)</tr>", listed, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
    # name, cohort, address, members, messages in the last 7 days, held (after the action checkbox)
    assert cells[1:7] == ["Group 3", "A Gentle Introduction to Python: Winter round", "winter-3@groups.example.org", "4", "1", "1"]
    assert f'<a href="{reverse(MESSAGES)}?group__id__exact={study_group.pk}">1</a>' in row
    assert 'alt="True"' in row  # mail open

    _run(client, ACTIONS[4], study_group.pk)  # close
    closed = client.get(reverse(MAILBOXES), {"mail": "closed"}).content.decode()
    assert "winter-3@groups.example.org" in closed and 'alt="False"' in closed
    assert "winter-3@groups.example.org" not in client.get(reverse(MAILBOXES), {"mail": "open"}).content.decode()
    # The mailbox's messages link opens that group's messages.
    assert "Hello group" in client.get(f"{reverse(MESSAGES)}?group__id__exact={study_group.pk}").content.decode()


def test_the_mailbox_list_costs_the_same_queries_for_more_groups(study_group, held):
    client = log_in(ORGANIZER)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse(MAILBOXES)).status_code == 200
        return len(captured)

    one_group = queries()
    for number in range(4, 10):
        group = StudyGroup.objects.create(cohort=study_group.cohort, number=number, name=f"Group {number}", slug=f"winter-{number}", utc_offset_minutes=0)
        EnrollmentFactory.create_batch(3, cohort=study_group.cohort, group=group)

    assert queries() == one_group
