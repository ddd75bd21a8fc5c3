"""Verbs of the scheduler."""

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.db.models import Max
from kombu.exceptions import OperationalError

from scheduler.models import Delivery, EmailKind, EmailTemplate, EmailTemplateVersion, Heartbeat, heartbeat_name
from scheduler.selectors import preview_context, sample_contexts
from scheduler.templating import email_check, email_compile, email_render_parts, markdown_to_html_template
from signups.emails import ENQUEUE_RETRY_POLICY
from signups.services import list_unsubscribe_headers


def heartbeat_record(now: datetime.datetime, queue: str) -> Heartbeat:
    """Record that `queue`'s heartbeat reached its worker at `now`. Idempotent: one row per queue."""
    heartbeat, _ = Heartbeat.objects.update_or_create(name=heartbeat_name(queue), defaults={"seen_at": now})
    return heartbeat


# --- Email templates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    headers: dict[str, str]


def template_version_save(template: EmailTemplate, subject: str, body: str, user=None, restored_from: int | None = None) -> EmailTemplateVersion:
    """Save new words for a template as its next version, which is then in force.

    Checks first (raises TemplateProblem with the field, line and message): nothing is
    saved and the last good version stays in force. The Markdown is converted to HTML here,
    once for this version. Transactional.
    """
    email_check(subject, body, sample_contexts())
    with transaction.atomic():
        template = EmailTemplate.objects.select_for_update().get(pk=template.pk)
        number = (template.versions.aggregate(last=Max("number"))["last"] or 0) + 1
        version = EmailTemplateVersion.objects.create(
            template=template, number=number, subject=subject, body=body,
            body_html=markdown_to_html_template(body), created_by=user, restored_from=restored_from,
        )
        template.current_version = version
        template.save(update_fields=["current_version", "updated_at"])
    return version


def template_restore(version: EmailTemplateVersion, user=None) -> EmailTemplateVersion:
    """Put an earlier version back in force, as a new version (history is never rewritten)."""
    return template_version_save(version.template, version.subject, version.body, user=user, restored_from=version.number)


def email_render(version, context: dict, delivery: str) -> RenderedEmail:
    """Subject, text, HTML and headers of one email: the service preview, test send and the
    scheduler all use. The version is compiled once per process and reused for every learner.

    `delivery` identifies the email for support staff and tracking (see delivery_header):
    it goes in the X-Mooc-Delivery header.
    """
    parts = email_render_parts(email_compile(version), context)
    headers = {**list_unsubscribe_headers(context["links"]["unsubscribe"]), "X-Mooc-Delivery": delivery}
    return RenderedEmail(subject=parts.subject, text=parts.text, html=parts.html, headers=headers)


def delivery_header(kind: str, cohort_slug: str | None, week_number: int, delivery_id) -> str:
    """The X-Mooc-Delivery header: `<kind>; cohort=<slug>; week=<n>; id=<ledger id>`."""
    return f"{kind}; cohort={cohort_slug or '-'}; week={week_number}; id={delivery_id}"


_DELIVERY_HEADER_ID = re.compile(r"(?:^|;)\s*id=(\d{1,18})\s*$")


def delivery_header_id(header: str) -> int | None:
    """The ledger id an X-Mooc-Delivery header names (delivery_header), or None (a test send's `test`)."""
    match = _DELIVERY_HEADER_ID.search(header or "")
    return int(match.group(1)) if match else None


class TestSendNotQueued(Exception):
    """The broker did not take the test send's task: nothing will be sent."""


def email_test_queue(template: EmailTemplate, cohort, to_email: str) -> RenderedEmail:
    """Queue a test send of the template's version in force, as a made-up learner of `cohort`
    would get it, to a staff address; a worker sends it (email_test_send), retrying if the
    provider fails. Rendered here first, so that a template that cannot be made says so on the
    page: raises TemplateError, or TestSendNotQueued when the broker is unreachable. Returns
    what will be sent."""
    from scheduler.tasks import email_test_send as email_test_send_task  # the tasks call these services

    version = template.current_version
    rendered = _test_email_render(template, version, cohort)
    try:
        email_test_send_task.apply_async(
            args=[version.pk, cohort.pk if cohort else None, to_email], retry_policy=ENQUEUE_RETRY_POLICY
        )
    except (OperationalError, OSError) as error:
        raise TestSendNotQueued(str(error)) from error
    return rendered


def email_test_send(version: EmailTemplateVersion, cohort, to_email: str) -> RenderedEmail:
    """Send a template's version, as a made-up learner of `cohort` would get it, to a staff address.

    Made-up links only, and no List-Unsubscribe: the staff member's mail client offers its
    Unsubscribe button for that header, and it must not act on anyone. Raises TemplateError,
    and whatever the provider raises.
    """
    rendered = _test_email_render(version.template, version, cohort)
    headers = {"X-Mooc-Delivery": rendered.headers["X-Mooc-Delivery"]}
    message = EmailMultiAlternatives(subject=f"[Test] {rendered.subject}", body=rendered.text, to=[to_email], headers=headers)
    message.attach_alternative(rendered.html, "text/html")
    message.send()
    return rendered


def _test_email_render(template: EmailTemplate, version: EmailTemplateVersion, cohort) -> RenderedEmail:
    context, _ = preview_context(template.course, cohort, template.kind, template.week_number)
    return email_render(version, context, delivery_header(template.kind, cohort.slug if cohort else None, template.week_number, "test"))


DEFAULT_EMAILS_FILE = Path(__file__).resolve().parent / "fixtures" / "default_emails.yaml"


def email_templates_install_defaults(course, definition_path: Path = DEFAULT_EMAILS_FILE) -> int:
    """Give a course the default emails it lacks: one per week, welcome, group intro, course end.

    Idempotent: a template that exists is left as staff made it. Returns how many were added.
    """
    with definition_path.open(encoding="utf-8") as definition_file:
        defaults = yaml.load(definition_file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    wanted = [
        (EmailKind.WEEK, number, defaults["weeks"].get(number, {}).get("subject", defaults["week"]["subject"]),
         defaults["weeks"].get(number, {}).get("intro", "").strip() + "\n\n" + defaults["week"]["body"])
        for number in range(1, course.week_count + 1)
    ] + [(kind, 0, defaults[kind]["subject"], defaults[kind]["body"]) for kind in (EmailKind.WELCOME, EmailKind.GROUP_INTRO, EmailKind.COURSE_END)]
    added = 0
    for kind, week_number, subject, body in wanted:
        with transaction.atomic():
            template, created = EmailTemplate.objects.get_or_create(course=course, cohort=None, kind=kind, week_number=week_number)
            if created or template.current_version_id is None:
                template_version_save(template, subject.strip(), body.strip() + "\n")
                added += 1
    return added


def relayed_copies_add(kind: str, copies: list[tuple[int, int, int]], now: datetime.datetime) -> dict[int, list[int]]:
    """Put copies of messages someone else wrote (group members') in the ledger: one row per
    (cohort id, relayed message id, recipient learner id) in `copies`. Returns, per relayed
    message, the ids of the rows added, for `deliveries_send_soon` once the caller's transaction
    has committed.

    Once per recipient and message, whoever calls it how often (the ledger's unique constraint);
    the send itself is the weekly emails' (claim, rate limit, retries, tracking; scheduler/
    sending.py builds each copy through RELAYED_EMAIL_BUILDERS). On PostgreSQL one INSERT ...
    SELECT FROM unnest(...) RETURNING for them all, as planning's _ledger_insert.
    """
    added: dict[int, list[int]] = {}
    if not copies:
        return added
    if connection.vendor == "postgresql":
        cohort_ids, message_ids, learner_ids = (list(column) for column in zip(*copies))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {Delivery._meta.db_table} (learner_id, cohort_id, kind, week_number, relayed_message, status, due_at,"
                " reason_code, reason, attempts, provider_message_id, created_at, updated_at)"
                " SELECT copy.learner_id, copy.cohort_id, %s, 0, copy.relayed_message, %s, %s, '', '', 0, '', %s, %s"
                " FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS copy(cohort_id, relayed_message, learner_id)"
                " ON CONFLICT DO NOTHING RETURNING relayed_message, id",
                [kind, Delivery.Status.PENDING, now, now, now, cohort_ids, message_ids, learner_ids],
            )
            for message_id, pk in cursor.fetchall():
                added.setdefault(message_id, []).append(pk)
        return added
    Delivery.objects.bulk_create(
        [
            Delivery(learner_id=learner_id, cohort_id=cohort_id, kind=kind, week_number=0, relayed_message=message_id,
                     due_at=now, created_at=now)
            for cohort_id, message_id, learner_id in copies
        ],
        batch_size=1000, ignore_conflicts=True,
    )
    rows = Delivery.objects.filter(
        kind=kind, relayed_message__in={message_id for _, message_id, _ in copies}, status=Delivery.Status.PENDING,
        queued_at__isnull=True,
    ).values_list("relayed_message", "pk")
    for message_id, pk in rows:
        added.setdefault(message_id, []).append(pk)
    return added


def deliveries_send_soon(ids: list[int], now: datetime.datetime) -> None:
    """Queue ledger rows for sending now rather than at the next dispatch pass (which queues any
    the broker did not take). Call it after your own transaction: the rows must be committed."""
    from scheduler.planning import deliveries_queue

    deliveries_queue(ids, now)
