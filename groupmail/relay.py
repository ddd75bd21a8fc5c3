"""Each member's copy of a group message, the way a careful list manager builds it (GNU Mailman 3's
munge_from, cook_headers and decorate handlers are the reference):

- **From** is rewritten to `"<sender's name> via <group name>" <group address>`: the copy leaves
  from our sending domain, so the sender's domain's DMARC policy cannot refuse it. The original
  From is kept in Reply-To, after the group's address: reply and reply-all reach the group (and
  the sender directly, who then gets no second copy through the group).
- **List headers**: List-Id (RFC 2919), List-Post, List-Archive (the group's page), and
  List-Unsubscribe with List-Unsubscribe-Post (RFC 2369, RFC 8058) that stop this group's mail
  only; Precedence: list; our X-Loop, so a copy that comes back is never relayed again.
- **Threading**: the original Message-ID, In-Reply-To and References are kept.
- **Content**: the text (and HTML) parts with a short footer; attachments up to
  GROUP_MAIL_MAX_ATTACHMENT_BYTES each, a note in place of larger ones.

The copy is built when it is sent, so a member who left, paused, switched group or muted it
since the message arrived gets nothing (the scheduler skips the row with the reason).
"""

import datetime
import logging
from collections import defaultdict
from email.utils import formataddr, parseaddr

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils.html import escape, linebreaks

from groupmail.models import GroupMailMute, GroupMessage
from groupmail.screening import LOOP_HEADER, header_text
from groupmail.services import message_parse, message_text
from scheduler.selectors import group_page_url
from signups.services import learner_links

logger = logging.getLogger(__name__)


def mute_url(links: dict, group_slug: str) -> str:
    """The member's one-click link that stops this group's mail (groupmail/urls.py)."""
    return f"{group_page_url(links, group_slug)}mute/"


def list_headers(group, links: dict) -> dict[str, str]:
    address = group.mail_address
    return {
        "List-Id": f"{group.name.replace('<', '').replace('>', '')} <{group.slug}.{settings.GROUP_MAIL_DOMAIN}>",
        "List-Post": f"<mailto:{address}>",
        "List-Archive": f"<{group_page_url(links, group.slug)}>",
        "List-Unsubscribe": f"<{mute_url(links, group.slug)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Precedence": "list",
        LOOP_HEADER: address,
    }


def _subject(subject: str, group_name: str) -> str:
    prefix = f"[{group_name}]"
    return subject if prefix in subject else f"{prefix} {subject or '(no subject)'}".strip()


def _sender_name(original_from: str, fallback: str) -> str:
    name = parseaddr(original_from)[0].strip() or fallback or parseaddr(original_from)[1].split("@")[0]
    return name.replace('"', "")


class _Original:
    """A group message parsed once for all its copies in a chunk."""

    def __init__(self, entry: GroupMessage):
        self.entry = entry
        message = message_parse(bytes(entry.raw))
        self.original_from = header_text(message, "From")
        self.threading = {name: header_text(message, name) for name in ("Message-ID", "In-Reply-To", "References")}
        self.text = message_text(message)
        try:
            html = message.get_body(preferencelist=("html",))
            self.html = html.get_content() if html is not None else ""
        except (LookupError, KeyError, ValueError, AttributeError, UnicodeError):
            self.html = ""
        self.attachments, self.left_out = [], []
        for part in message.iter_attachments():
            name = part.get_filename() or "attachment"
            try:
                content = part.get_content()
            except (LookupError, KeyError, ValueError, UnicodeError):
                self.left_out.append((name, 0))
                continue
            content = content.encode() if isinstance(content, str) else content
            if not isinstance(content, bytes) or len(content) > settings.GROUP_MAIL_MAX_ATTACHMENT_BYTES:
                self.left_out.append((name, len(content) if isinstance(content, bytes) else 0))
            else:
                self.attachments.append((name, content, part.get_content_type()))

    def copy_for(self, learner, links: dict) -> EmailMessage:
        entry, group = self.entry, self.entry.group
        context = {
            "group": group, "course": group.cohort.course, "page_url": group_page_url(links, group.slug),
            "mute_url": mute_url(links, group.slug), "left_out": self.left_out,
            "max_megabytes": round(settings.GROUP_MAIL_MAX_ATTACHMENT_BYTES / (1024 * 1024), 1),
        }
        footer = render_to_string("groupmail/email/footer.txt", context)
        headers = {**list_headers(group, links), **{name: value for name, value in self.threading.items() if value}}
        sender = formataddr((f"{_sender_name(self.original_from, entry.sender.first_name)} via {group.name}", group.mail_address))
        reply_to = [group.mail_address] + ([self.original_from] if self.original_from else [])
        copy = EmailMultiAlternatives(
            subject=_subject(entry.subject, group.name), body=f"{self.text.rstrip()}\n\n{footer}", from_email=sender,
            to=[learner.email], reply_to=reply_to, headers=headers,
        )
        if self.html:
            copy.attach_alternative(f"{self.html}\n<hr>\n{linebreaks(escape(footer))}", "text/html")
        for name, content, mimetype in self.attachments:
            copy.attach(name, content, mimetype)
        return copy


def copies_build(batch, now: datetime.datetime) -> dict[int, EmailMessage | str]:
    """scheduler/sending.py's RELAYED_EMAIL_BUILDERS for group messages: each row's copy, or why
    its member no longer gets it. A fixed number of queries for the whole batch."""
    message_ids = {row.relayed_message for row, _ in batch}
    entries = {
        entry.pk: entry
        for entry in GroupMessage.objects.filter(pk__in=message_ids, status=GroupMessage.Status.RELAYED)
        .select_related("group__cohort__course", "sender")
    }
    muted = defaultdict(set)
    for group_id, learner_id in GroupMailMute.objects.filter(
        group_id__in={entry.group_id for entry in entries.values()}, kind=GroupMailMute.Kind.RECEIVING
    ).values_list("group_id", "learner_id"):
        muted[group_id].add(learner_id)
    originals: dict[int, _Original] = {}
    built: dict[int, EmailMessage | str] = {}
    for row, enrollment in batch:
        entry = entries.get(row.relayed_message)
        if entry is None:
            continue  # the scheduler names the reason: the message is gone
        if enrollment.group_id != entry.group_id:
            built[row.pk] = "the learner is no longer in this group"
        elif row.learner_id in muted[entry.group_id]:
            built[row.pk] = "the learner muted this group's mail"
        elif not settings.GROUP_MAIL_DOMAIN:
            built[row.pk] = "group mail is off on this site"
        else:
            if entry.pk not in originals:
                originals[entry.pk] = _Original(entry)
            built[row.pk] = originals[entry.pk].copy_for(enrollment.learner, learner_links(enrollment.learner))
    return built
