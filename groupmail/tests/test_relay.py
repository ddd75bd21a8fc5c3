"""A member's message relayed to the other members through the delivery ledger, and what keeps
machines, loops, strangers and bursts out (groupmail/services.py, screening.py, relay.py)."""

import datetime
from email.utils import parseaddr

import pytest
from django.core import mail

from kombu.exceptions import OperationalError

from groupmail import services, tasks
from groupmail.inbound import NULL_SENDER, inbound_receive
from groupmail.models import GroupMailMute, GroupMessage, InboundMessage
from groupmail.tests.conftest import DOMAIN, IN_WEEK_1
from groupmail.tests.messages import raw_message
from scheduler.models import Delivery, EmailKind
from scheduler.sending import deliveries_send
from scheduler.tasks import deliveries_send_chunk
from signups.models import Enrollment, Learner, Suppression
from signups.services import enrollment_leave, enrollment_pause, learner_erase
from signups.suppressions import learner_mail_stop

pytestmark = [pytest.mark.django_db, pytest.mark.clock(IN_WEEK_1)]

GROUP = f"winter-3@{DOMAIN}"


def post(clock, raw=None, **fields) -> InboundMessage:
    """Receive a message as a way in would (tasks run at once in tests: screened, relayed, sent)."""
    inbound = inbound_receive(raw or raw_message(), esp="test", now=clock.now(), **fields)
    inbound.refresh_from_db()
    return inbound


def broker_down(*args, **kwargs):
    raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def copies() -> dict:
    """The relayed copies sent so far, by recipient (notices to senders left out)."""
    return {message.to[0]: message for message in mail.outbox if message.extra_headers.get("List-Id")}


def notices() -> list:
    return [message for message in mail.outbox if message.extra_headers.get("Auto-Submitted") == "auto-replied"]


def test_a_members_message_reaches_the_other_members_once_each(study_group, clock):
    inbound = post(clock, envelope_recipients=[GROUP])

    assert inbound.status == InboundMessage.Status.RELAYED and inbound.raw == b""
    assert sorted(copies()) == ["bob@example.org", "cy@example.org", "dee@example.org"]
    copy = copies()["bob@example.org"]
    assert parseaddr(copy.from_email) == ("Ada Lovelace via Group 3", GROUP)
    assert copy.reply_to == [GROUP, "Ada Lovelace <ada@example.org>"]
    assert copy.subject == "[Group 3] Hello group"
    assert copy.body.startswith("Hi all, Ada here.\n\n")
    headers = copy.extra_headers
    assert headers["List-Id"] == f"Group 3 <winter-3.{DOMAIN}>"
    assert headers["List-Post"] == f"<mailto:{GROUP}>"
    assert headers["Precedence"] == "list" and headers["X-Loop"] == GROUP
    bob = Learner.objects.get(email="bob@example.org")
    assert headers["List-Unsubscribe"].startswith("<http://testserver/me/") and headers["List-Unsubscribe"].endswith("/group/winter-3/mute/>")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].strip("<>") in copy.body  # the footer's own way out
    row = Delivery.objects.get(learner=bob, kind=EmailKind.GROUP_MESSAGE)
    assert row.status == Delivery.Status.SENT and row.relayed_message == GroupMessage.objects.get().pk
    assert copy.metadata["delivery"] == str(row.pk)  # tracked like any course email: bounces come back to it
    entry = GroupMessage.objects.get()
    assert entry.status == GroupMessage.Status.RELAYED and entry.sender.email == "ada@example.org"
    assert entry.body_text == "Hi all, Ada here.\n" and entry.subject == "Hello group"


def test_threading_headers_are_kept_so_replies_stay_in_their_thread(study_group, clock):
    raw = raw_message(subject="Re: [Group 3] Week 1", message_id="<reply-1@example.org>",
                      headers={"In-Reply-To": "<first@example.org>", "References": "<first@example.org>"})

    post(clock, raw)

    headers = copies()["cy@example.org"].extra_headers
    assert headers["Message-ID"] == "<reply-1@example.org>"
    assert headers["In-Reply-To"] == "<first@example.org>" and headers["References"] == "<first@example.org>"
    assert copies()["cy@example.org"].subject == "Re: [Group 3] Week 1"  # the prefix once
    assert "<reply-1@example.org>" in copies()["cy@example.org"].message().as_string()


def test_the_same_message_posted_twice_is_relayed_once(study_group, clock):
    raw = raw_message()

    post(clock, raw, envelope_recipients=[GROUP])
    assert inbound_receive(raw, esp="test", now=clock.now(), envelope_recipients=[GROUP]) is None

    assert len(mail.outbox) == 3
    assert Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE).count() == 3
    assert InboundMessage.objects.count() == 1 and GroupMessage.objects.count() == 1


def test_screening_twice_relays_once(study_group, clock):
    inbound = post(clock)
    InboundMessage.objects.filter(pk=inbound.pk).update(status=InboundMessage.Status.RECEIVED)  # as if a second worker had it

    services.inbound_screen(inbound.pk, clock.now())

    assert Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE).count() == 3 and len(mail.outbox) == 3


def test_the_sender_is_recognised_whatever_the_case_of_the_address(study_group, clock):
    post(clock, raw_message(sender="ADA@Example.ORG"))

    assert sorted(copies()) == ["bob@example.org", "cy@example.org", "dee@example.org"]


def test_the_envelope_sender_counts_where_the_way_in_gives_it(study_group, clock):
    """A member writing from an alias whose envelope sender is their address (a forwarding setup)."""
    post(clock, raw_message(sender="Ada <ada@alias.example.net>"), envelope_sender="ada@example.org")

    assert len(copies()) == 3 and not notices()


def test_members_named_in_to_or_cc_get_no_second_copy(study_group, clock):
    post(clock, raw_message(to=f"{GROUP}, Bob <bob@example.org>"))

    assert sorted(copies()) == ["cy@example.org", "dee@example.org"]


@pytest.mark.parametrize("change", ["leave", "pause", "switch", "suppress", "mute"])
def test_members_gone_paused_or_muted_are_left_out_when_it_arrives(study_group, clock, change):
    bob = Enrollment.objects.get(learner__email="bob@example.org")
    _change_membership(bob, change, clock)

    post(clock)

    assert sorted(copies()) == ["cy@example.org", "dee@example.org"]


@pytest.mark.parametrize("change", ["leave", "pause", "switch", "suppress", "mute"])
def test_members_who_leave_before_their_copy_is_sent_do_not_get_it(study_group, clock, monkeypatch, change):
    queued = []
    monkeypatch.setattr(deliveries_send_chunk, "apply_async", lambda args, **options: queued.append(args[0]))  # waiting in the queue
    post(clock)
    assert sorted(map(len, queued)) == [3] and not mail.outbox
    bob = Enrollment.objects.get(learner__email="bob@example.org")
    _change_membership(bob, change, clock)

    ids = list(Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE).values_list("pk", flat=True))
    report = deliveries_send(ids, now=clock.now())

    assert sorted(copies()) == ["cy@example.org", "dee@example.org"]
    assert report.sent == 2 and report.skipped == 1
    skipped = Delivery.objects.get(learner=bob.learner, kind=EmailKind.GROUP_MESSAGE)
    assert skipped.status == Delivery.Status.SKIPPED and skipped.reason_code == Delivery.Reason.NOT_MAILABLE


def _change_membership(enrollment, change, clock):
    from cohorts.models import StudyGroup

    match change:
        case "leave":
            enrollment_leave(enrollment, clock.now())
        case "pause":
            enrollment_pause(enrollment, clock.now())
        case "switch":  # re-forming moved them to another group of the round
            other = StudyGroup.objects.create(cohort=enrollment.cohort, number=4, name="Group 4", slug="winter-4", utc_offset_minutes=0)
            Enrollment.objects.filter(pk=enrollment.pk).update(group=other)
        case "suppress":
            learner_mail_stop(enrollment.learner_id, Suppression.Reason.BOUNCED, clock.now())
        case "mute":
            services.member_mute(enrollment.group_id, enrollment.learner_id, GroupMailMute.Kind.RECEIVING, clock.now())


def test_a_paused_member_may_still_write_to_the_group(study_group, clock):
    enrollment_pause(Enrollment.objects.get(learner__email="ada@example.org"), clock.now())

    post(clock)

    assert sorted(copies()) == ["bob@example.org", "cy@example.org", "dee@example.org"]


# --- Strangers, closed groups, unreadable and oversized mail: refused, the sender told once a day ---


def test_a_non_member_is_refused_and_told_once_a_day(study_group, clock):
    stranger = raw_message(sender="Eve <eve@example.net>")

    first = post(clock, stranger)
    post(clock, raw_message(sender="Eve <eve@example.net>", subject="Again"))
    assert first.status == InboundMessage.Status.REFUSED and first.refusal == InboundMessage.Refusal.NOT_MEMBER
    assert not copies() and len(notices()) == 1
    notice = notices()[0]
    assert notice.to == ["eve@example.net"] and notice.subject == "Only the group's members can write to a study group"
    assert GROUP in notice.body and notice.extra_headers["X-Loop"] == DOMAIN

    clock.shift(datetime.timedelta(days=1))
    post(clock, raw_message(sender="Eve <eve@example.net>", subject="Next day"))
    assert len(notices()) == 2


def test_a_member_of_another_group_is_not_a_member_of_this_one(study_group, clock):
    from signups.tests.factories import EnrollmentFactory

    EnrollmentFactory(cohort=study_group.cohort, learner__email="fay@example.org")  # in the round, in no group

    assert post(clock, raw_message(sender="fay@example.org")).refusal == InboundMessage.Refusal.NOT_MEMBER


def test_no_notice_goes_to_a_suppressed_address(study_group, clock):
    from signups.suppressions import address_suppress
    from signups.models import email_digest

    address_suppress(email_digest("eve@example.net"), Suppression.Reason.COMPLAINED)

    post(clock, raw_message(sender="eve@example.net"))

    assert not mail.outbox


@pytest.mark.parametrize("to, refusal, subject", [
    (f"nobody@{DOMAIN}", InboundMessage.Refusal.UNKNOWN_GROUP, "There is no study group at that address"),
    ("someone@elsewhere.example", InboundMessage.Refusal.UNKNOWN_GROUP, "There is no study group at that address"),
])
def test_mail_to_no_group_we_know_is_refused(study_group, clock, to, refusal, subject):
    inbound = post(clock, raw_message(to=to))

    assert inbound.refusal == refusal and not copies()
    assert [notice.subject for notice in notices()] == [subject]


def test_a_group_merged_away_by_re_forming_is_an_unknown_group(study_group, clock):
    from cohorts.services import study_groups_dissolve

    study_groups_dissolve([study_group.pk], clock.now())

    assert post(clock).refusal == InboundMessage.Refusal.UNKNOWN_GROUP and not copies()


def test_a_closed_groups_mail_is_refused(study_group, clock):
    services.group_mail_close(study_group.pk, clock.now())

    inbound = post(clock)

    assert inbound.refusal == InboundMessage.Refusal.CLOSED and not copies()
    assert [notice.subject for notice in notices()] == ["This study group's mail is closed"]
    services.group_mail_reopen(study_group.pk)
    assert post(clock, raw_message(subject="Open again")).status == InboundMessage.Status.RELAYED


def test_a_message_over_the_size_limit_is_refused_and_only_its_headers_kept(study_group, clock, settings):
    settings.GROUP_MAIL_MAX_MESSAGE_BYTES = 2000

    inbound = post(clock, raw_message(body="x" * 5000))

    assert inbound.refusal == InboundMessage.Refusal.TOO_BIG and inbound.size > 5000
    assert not copies() and [notice.subject for notice in notices()] == ["Your message to a study group was too large"]
    assert not GroupMessage.objects.exists()


def test_a_message_without_a_readable_sender_is_refused(study_group, clock):
    inbound = post(clock, b"To: winter-3@groups.example.org\r\nSubject: who?\r\n\r\nno From at all\r\n")

    assert inbound.refusal == InboundMessage.Refusal.MALFORMED and not mail.outbox


def test_nothing_is_relayed_when_group_mail_is_off(study_group, clock, settings):
    settings.GROUP_MAIL_DOMAIN = ""

    assert post(clock).refusal == InboundMessage.Refusal.OFF and not mail.outbox


# --- Machines and loops: never relayed, never answered ---------------------------------------------


@pytest.mark.parametrize("headers, envelope_sender", [
    ({"Auto-Submitted": "auto-replied"}, None),
    ({"Auto-Submitted": "auto-generated"}, None),
    ({"Precedence": "bulk"}, None),
    ({"Precedence": "junk"}, None),
    ({"Precedence": "list"}, None),
    ({"X-Autoreply": "yes"}, None),
    ({"X-Loop": GROUP}, None),  # one of our own copies, come back
    ({"X-Mooc-Delivery": "week; cohort=winter; week=1; id=5"}, None),  # one of our course emails, come back
    ({"List-Id": "Another list <other.example.net>"}, None),
    ({}, NULL_SENDER),  # a bounce
])
def test_auto_replies_bounces_and_loops_are_never_relayed_or_answered(study_group, clock, headers, envelope_sender):
    inbound = post(clock, raw_message(headers=headers), envelope_sender=envelope_sender)

    assert inbound.status == InboundMessage.Status.REFUSED and inbound.refusal == InboundMessage.Refusal.AUTOMATED
    assert not mail.outbox and not GroupMessage.objects.exists()


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@example.org", f"winter-4@{DOMAIN}"])
def test_mail_from_daemons_and_our_own_addresses_is_never_relayed(study_group, clock, sender):
    assert post(clock, raw_message(sender=sender)).refusal == InboundMessage.Refusal.AUTOMATED
    assert not mail.outbox


def test_a_delivery_report_is_never_relayed(study_group, clock):
    raw = (b"From: ada@example.org\r\nTo: winter-3@groups.example.org\r\nSubject: Delivery Status Notification\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b--\r\n")

    assert post(clock, raw).refusal == InboundMessage.Refusal.AUTOMATED and not mail.outbox


# --- Bursts: held for an organizer --------------------------------------------------------------------


def test_a_member_over_the_hourly_limit_is_held_for_review(study_group, clock, settings):
    settings.GROUP_MAIL_MEMBER_MESSAGES_PER_HOUR = 2

    statuses = [post(clock, raw_message(subject=f"Message {n}")).status for n in range(3)]

    assert statuses == [InboundMessage.Status.RELAYED, InboundMessage.Status.RELAYED, InboundMessage.Status.HELD]
    held = GroupMessage.objects.get(status=GroupMessage.Status.HELD)
    assert held.hold_reason == GroupMessage.HoldReason.MEMBER_RATE and len(copies()) == 3  # bob's, cy's, dee's of the last one
    assert post(clock, raw_message(sender="bob@example.org", subject="Bob")).status == InboundMessage.Status.RELAYED
    clock.shift(datetime.timedelta(hours=1, minutes=1))
    assert post(clock, raw_message(subject="An hour later")).status == InboundMessage.Status.RELAYED


def test_a_group_over_the_hourly_limit_is_held_for_review(study_group, clock, settings):
    settings.GROUP_MAIL_GROUP_MESSAGES_PER_HOUR = 2

    senders = ["ada", "bob", "cy"]
    statuses = [post(clock, raw_message(sender=f"{name}@example.org", subject=name)).status for name in senders]

    assert statuses[-1] == InboundMessage.Status.HELD
    assert GroupMessage.objects.get(status=GroupMessage.Status.HELD).hold_reason == GroupMessage.HoldReason.GROUP_RATE


def test_an_organizer_relays_or_discards_what_was_held(study_group, clock, settings):
    services.member_mute(study_group.pk, Learner.objects.get(email="ada@example.org").pk, GroupMailMute.Kind.POSTING, clock.now())
    post(clock, raw_message(subject="Held one"))
    post(clock, raw_message(subject="Held two"))
    first, second = GroupMessage.objects.order_by("pk")
    assert first.hold_reason == GroupMessage.HoldReason.MUTED and not mail.outbox

    assert services.group_message_release(first.pk, None, clock.now()) == 3
    services.group_message_discard(second.pk, None)

    assert sorted(message.subject for message in copies().values()) == ["[Group 3] Held one"] * 3
    second.refresh_from_db()
    assert second.status == GroupMessage.Status.DISCARDED and second.body_text == "" and bytes(second.raw) == b""
    with pytest.raises(services.NotHeld):
        services.group_message_release(first.pk, None, clock.now())


# --- Attachments ---------------------------------------------------------------------------------------


def test_small_attachments_pass_and_large_ones_become_a_note(study_group, clock):
    small, large = b"print('hi')\n", b"x" * (200 * 1024)
    post(clock, raw_message(attachments=[("hello.py", small, "text/x-python"), ("video.bin", large, "application/octet-stream")]))

    copy = copies()["bob@example.org"]
    assert [(name, content) for name, content, _ in copy.attachments] == [("hello.py", small.decode())]
    assert "An attachment was left out, larger than 0.1 MB: video.bin" in copy.body


def test_an_html_message_keeps_its_html_and_gets_the_footer_in_both_parts(study_group, clock):
    post(clock, raw_message(body="Plain words", html="<p>Rich <b>words</b></p>"))

    copy = copies()["dee@example.org"]
    html = dict((mimetype, content) for content, mimetype in copy.alternatives)["text/html"]
    assert "<p>Rich <b>words</b></p>" in html and "Stop getting your group" in html
    assert copy.body.startswith("Plain words")


# --- The archive goes with the sender's data --------------------------------------------------------------


def test_an_erased_members_messages_leave_the_archive(study_group, clock):
    post(clock)
    assert GroupMessage.objects.count() == 1

    learner_erase(Learner.objects.get(email="ada@example.org"), clock.today())

    assert not GroupMessage.objects.exists()


def test_old_envelopes_are_forgotten_but_not_the_archive(study_group, clock):
    post(clock)
    clock.shift(datetime.timedelta(days=31))

    assert services.inbound_forget_old(clock.now()) == 1
    assert not InboundMessage.objects.exists() and GroupMessage.objects.count() == 1


def test_messages_whose_task_was_lost_are_screened_by_the_periodic_job(study_group, clock, monkeypatch):
    with monkeypatch.context() as outage:
        outage.setattr(tasks.inbound_screen_due, "apply_async", broker_down)
        inbound = inbound_receive(raw_message(), esp="test", now=clock.now())
    assert InboundMessage.objects.get(pk=inbound.pk).status == InboundMessage.Status.RECEIVED

    clock.shift(datetime.timedelta(minutes=1))
    assert services.inbound_screen_waiting(clock.now()) == 1

    assert InboundMessage.objects.get(pk=inbound.pk).status == InboundMessage.Status.RELAYED
    assert len(copies()) == 3


def test_copies_the_broker_did_not_take_are_left_for_the_next_dispatch(study_group, clock, monkeypatch):
    with monkeypatch.context() as outage:
        outage.setattr(deliveries_send_chunk, "apply_async", broker_down)
        post(clock)
    rows = Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE)
    assert rows.count() == 3 and not rows.filter(queued_at__isnull=False).exists()

    from scheduler.tests.helpers import run_pass

    run_pass(clock.now())

    assert len(copies()) == 3


# --- Batches: what a burst costs -----------------------------------------------------------------------


def held_back(monkeypatch) -> None:
    """Messages wait to be screened, as they do in the broker's queue while a worker is busy."""
    monkeypatch.setattr(tasks.inbound_screen_due, "apply_async", lambda *args, **kwargs: None)


def test_a_batch_keeps_the_hourly_limits_as_it_accepts_messages(study_group, clock, settings, monkeypatch):
    settings.GROUP_MAIL_MEMBER_MESSAGES_PER_HOUR = 2
    held_back(monkeypatch)
    for n in range(3):
        inbound_receive(raw_message(subject=f"Message {n}"), esp="test", now=clock.now())

    report = services.inbound_screen_batch(clock.now())

    assert (report.screened, report.relayed, report.held, report.copies) == (3, 2, 1, 6)
    held = GroupMessage.objects.get(status=GroupMessage.Status.HELD)
    assert held.subject == "Message 2" and held.hold_reason == GroupMessage.HoldReason.MEMBER_RATE


def test_a_batch_costs_the_same_queries_for_one_message_or_many(study_group, clock, monkeypatch, django_assert_num_queries):
    from signups.tests.factories import EnrollmentFactory

    held_back(monkeypatch)
    monkeypatch.setattr(deliveries_send_chunk, "apply_async", lambda *args, **kwargs: None)
    others = []
    for number in range(4, 9):  # more groups, more members
        from cohorts.models import StudyGroup

        group = StudyGroup.objects.create(cohort=study_group.cohort, number=number, name=f"Group {number}",
                                          slug=f"winter-{number}", utc_offset_minutes=0)
        for member in range(3):
            EnrollmentFactory(cohort=study_group.cohort, group=group, learner__email=f"m{number}-{member}@example.org")
        others.append(group)

    def screen(senders_and_groups) -> int:
        for sender, slug in senders_and_groups:
            inbound_receive(raw_message(sender=sender, to=f"{slug}@{DOMAIN}"), esp="test", now=clock.now())
        with django_assert_num_queries(queries_per_batch()):
            report = services.inbound_screen_batch(clock.now())
        return report

    one = screen([("ada@example.org", "winter-3")])
    many = screen([("ada@example.org", "winter-3"), ("bob@example.org", "winter-3")]
                  + [(f"m{group.number}-0@example.org", group.slug) for group in others])

    assert (one.relayed, many.relayed) == (1, 7) and many.copies == 2 * 3 + 5 * 2


def queries_per_batch() -> int:
    """Savepoint, the batch's rows, its groups, closures, members, mutes, the hour's counts, what
    was relayed before, the GroupMessages, the copies (one INSERT ... RETURNING on PostgreSQL; an
    INSERT, then their ids, on SQLite), the batch's update, the savepoint's release; then queueing
    the copies (one UPDATE of queued_at)."""
    from django.db import connection

    return 13 if connection.vendor == "postgresql" else 14
