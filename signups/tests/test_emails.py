"""Learners' own emails go through the outbox (signups/emails.py): the request writes a row and
queues a task after its commit; the worker claims, renders, sends, retries, gives up; the
sweeper queues again what was lost. Tasks run eagerly here (pytest.ini), on_commit as
mooc/testing/fixtures.py says."""

import datetime
import logging

import pytest
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.core import mail
from django.db import transaction
from kombu.exceptions import OperationalError

from mooc.testing.providers import ScriptedAnymailBackend
from signups import email_rows, emails
from signups.models import Enrollment, Learner, LearnerEmail, Suppression, email_digest
from signups.services import _send, learner_erase, learner_unsubscribe
from signups.tasks import learner_email_send, learner_emails_requeue
from signups.tests.factories import EnrollmentFactory
from signups.tests.test_signup import confirm_link, form_data

pytestmark = pytest.mark.django_db

ADA = "ada.lovelace@example.org"


@pytest.fixture
def provider(settings):
    """Anymail's test backend, scriptable per address: provider[ADA] = [error, None] (None: accept)."""
    settings.EMAIL_BACKEND = "mooc.testing.providers.ScriptedAnymailBackend"
    ScriptedAnymailBackend.script = {}
    yield ScriptedAnymailBackend.script
    ScriptedAnymailBackend.script = {}


@pytest.fixture
def held_messages(monkeypatch):
    """The task messages queued from now on, held rather than run: [(email id, eta)]. A test
    delivers one with `learner_email_send.apply(args=[email_id])`, when it likes."""
    held = []
    monkeypatch.setattr(learner_email_send, "apply_async", lambda args, eta=None, **options: held.append((args[0], eta)))
    return held


def unavailable():
    return AnymailAPIError("Service Unavailable", status_code=503)


def the_email() -> LearnerEmail:
    return LearnerEmail.objects.get()


def test_a_signup_answers_before_the_email_is_sent_and_the_worker_sends_it(client, next_cohort, held_messages):
    response = client.post("/signup/", form_data(cohort=next_cohort.slug))

    assert response.status_code == 302 and not mail.outbox
    email = the_email()
    assert (email.template, email.status, email.attempts) == ("confirmation", "pending", 0)
    assert held_messages == [(email.pk, None)]
    # Only plain values and references to rows are stored; the rows are read again at send time.
    enrollment = Enrollment.objects.get()
    assert email.context["enrollment"] == {"model": "signups.enrollment", "pk": enrollment.pk}
    assert email.context["confirm_url"].startswith("http://testserver/confirm/")

    learner_email_send.apply(args=[email.pk])

    [message] = mail.outbox
    assert message.to == [ADA] and "Confirm" in message.subject
    email.refresh_from_db()
    assert (email.status, email.attempts, email.sent_at is not None) == ("sent", 1, True)


def test_a_failed_send_is_retried_with_backoff_and_then_sent(client, next_cohort, provider, held_messages, clock):
    provider[ADA] = [unavailable(), unavailable(), None]
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    email = the_email()

    learner_email_send.apply(args=[email.pk])
    email.refresh_from_db()
    first_failure = clock.now()
    assert (email.status, email.attempts) == ("pending", 1)
    assert email.last_error.startswith("AnymailAPIError") and "Service Unavailable" in email.last_error
    # The task queued itself again for when the backoff ends: 30 seconds.
    assert email.next_attempt_at == held_messages[-1][1]
    assert datetime.timedelta(seconds=29) < email.next_attempt_at - first_failure <= datetime.timedelta(seconds=30)

    learner_email_send.apply(args=[email.pk])  # early (a duplicate message): nothing happens
    email.refresh_from_db()
    assert (email.status, email.attempts) == ("pending", 1)

    clock.shift(datetime.timedelta(seconds=31))
    learner_email_send.apply(args=[email.pk])
    email.refresh_from_db()
    assert (email.status, email.attempts) == ("pending", 2)
    assert datetime.timedelta(seconds=119) < email.next_attempt_at - clock.now() <= datetime.timedelta(minutes=2)

    clock.shift(datetime.timedelta(minutes=2, seconds=1))
    learner_email_send.apply(args=[email.pk])

    email.refresh_from_db()
    assert (email.status, email.attempts) == ("sent", 3)
    [message] = mail.outbox
    assert message.to == [ADA]


def test_the_backoff_grows_and_is_capped():
    delays = [emails.retry_delay(attempts).total_seconds() for attempts in range(1, 8)]
    assert delays == [30, 120, 480, 1920, 3600, 3600, 3600]


def test_out_of_attempts_it_fails_and_a_new_signup_sends_again_at_once(client, next_cohort, provider, settings, clock):
    settings.LEARNER_EMAIL_MAX_ATTEMPTS = 2
    provider[ADA] = [unavailable(), unavailable()]
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    clock.shift(datetime.timedelta(seconds=31))
    learner_email_send.apply(args=[the_email().pk])

    email = the_email()
    assert (email.status, email.attempts) == ("failed", 2)
    assert email.last_error.startswith("gave up after 2 attempts: AnymailAPIError")
    assert Learner.objects.get().confirmation_sent_at is None  # the resend interval is released

    client.post("/signup/", form_data(cohort=next_cohort.slug))  # well within ten minutes
    [message] = mail.outbox
    assert message.to == [ADA] and "Confirm" in message.subject


def test_a_refused_address_fails_at_once_and_a_new_signup_sends_again(client, next_cohort, provider):
    provider[ADA] = [AnymailRecipientsRefused("rejected: mailbox unavailable")]
    client.post("/signup/", form_data(cohort=next_cohort.slug))

    email = the_email()
    assert (email.status, email.attempts) == ("failed", 1)
    assert email.last_error.startswith("the provider refused the address: AnymailRecipientsRefused")
    assert not mail.outbox
    assert Learner.objects.get().confirmation_sent_at is None
    # Refused like a hard bounce: nothing more goes to it unless its owner asks again.
    assert Learner.objects.get().unsubscribed_reason == Suppression.Reason.REFUSED
    assert Suppression.objects.get(email_digest=email_digest(ADA)).reason == Suppression.Reason.REFUSED

    client.post("/signup/", form_data(cohort=next_cohort.slug))

    [message] = mail.outbox
    assert message.to == [ADA]
    assert client.post(confirm_link(message)).status_code == 200
    assert LearnerEmail.objects.filter(status="sent").count() == 1
    assert Learner.objects.get().unsubscribed_at is None and not Suppression.objects.exists()


def test_signing_up_again_while_a_confirmation_waits_replaces_it(client, next_cohort, later_cohort, provider, clock):
    provider[ADA] = [unavailable(), unavailable()]
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    clock.shift(datetime.timedelta(minutes=11))  # past the resend interval; the first still waits
    learner_email_send.apply(args=[the_email().pk])  # its second failure
    assert the_email().status == "pending"

    client.post("/signup/", form_data(cohort=later_cohort.slug))

    email = the_email()  # one row, not two
    assert (email.status, email.attempts) == ("sent", 1)
    [message] = mail.outbox
    assert later_cohort.name in message.body  # the newest signup's link and round


def test_the_email_shows_the_rows_as_they_are_when_it_is_sent(client, next_cohort, later_cohort, held_messages):
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    Enrollment.objects.update(cohort=later_cohort)  # an organizer moved them meanwhile

    learner_email_send.apply(args=[the_email().pk])

    [message] = mail.outbox
    assert later_cohort.name in message.body and next_cohort.name not in message.body


def test_a_context_must_be_rows_or_plain_values(next_cohort):
    learner = EnrollmentFactory(cohort=next_cohort).learner

    with pytest.raises(TypeError, match="'when' is not JSON"):
        _send(learner, "manage_link", {"when": datetime.date(2027, 1, 1)})
    with pytest.raises(TypeError, match="read back as a reference"):
        _send(learner, "manage_link", {"thing": {"model": "x", "pk": 1}})
    assert not LearnerEmail.objects.exists()


def test_an_email_whose_row_is_gone_fails_with_the_reason(next_cohort, held_messages):
    enrollment = EnrollmentFactory(cohort=next_cohort)
    _send(enrollment.learner, "already_enrolled", {"enrollment": enrollment, "joined_from_waitlist": False})
    Enrollment.objects.filter(pk=enrollment.pk).delete()

    learner_email_send.apply(args=[the_email().pk])

    email = the_email()
    assert email.status == "failed" and "no longer exists" in email.last_error
    assert not mail.outbox


def test_an_email_queued_before_the_learner_unsubscribed_is_not_sent(next_cohort, held_messages, clock):
    enrollment = EnrollmentFactory(cohort=next_cohort)
    _send(enrollment.learner, "manage_link", {})
    clock.shift(datetime.timedelta(seconds=1))
    learner_unsubscribe(enrollment.learner, now=clock.now())

    learner_email_send.apply(args=[the_email().pk])

    assert the_email().status == "failed" and "unsubscribed" in the_email().last_error
    assert not mail.outbox


def test_an_erased_learners_waiting_email_is_gone(client, next_cohort, provider, clock):
    provider[ADA] = [unavailable()]
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    email_id = the_email().pk
    assert the_email().status == "pending"

    learner_erase(Learner.objects.get(), today=clock.today())

    assert not LearnerEmail.objects.exists()
    clock.shift(datetime.timedelta(minutes=1))
    learner_email_send.apply(args=[email_id])  # its queued retry finds nothing
    assert not mail.outbox


# --- One send per row, whatever the messages do --------------------------------------------------


def test_two_tasks_for_one_row_send_once(client, next_cohort, held_messages, monkeypatch):
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    email_id = the_email().pk
    from signups import services

    render_and_send = services._render_and_send
    second = []

    def send_while_another_task_runs(*args):
        # A second worker receives the same row (a duplicate message) while this one sends it.
        second.append(emails.learner_email_send(email_id, now=the_email().claimed_at))
        render_and_send(*args)

    monkeypatch.setattr(services, "_render_and_send", send_while_another_task_runs)
    learner_email_send.apply(args=[email_id])
    learner_email_send.apply(args=[email_id])  # and one more after it was sent

    assert second == [emails.NOT_CLAIMED]
    assert len(mail.outbox) == 1
    assert (the_email().status, the_email().attempts) == ("sent", 1)


def test_a_row_whose_worker_died_is_sent_again_and_the_late_worker_changes_nothing(client, next_cohort, held_messages, clock):
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    email_id = the_email().pk
    dead_workers_claim = email_rows.row_claim(email_id, clock.now())  # then the worker was killed

    clock.shift(email_rows.CLAIM_TIMEOUT - datetime.timedelta(seconds=5))
    learner_emails_requeue.apply()
    assert held_messages == [(email_id, None)]  # only the signup's own: its worker may be alive
    learner_email_send.apply(args=[email_id])
    assert the_email().status == "sending" and not mail.outbox  # still its worker's

    clock.shift(datetime.timedelta(seconds=10))
    learner_emails_requeue.apply()
    assert held_messages[-1] == (email_id, None)
    learner_email_send.apply(args=[email_id])

    assert (the_email().status, the_email().attempts) == ("sent", 2)
    assert len(mail.outbox) == 1
    assert not email_rows.row_sent(email_id, dead_workers_claim, clock.now())
    assert not email_rows.row_retry(email_id, dead_workers_claim, clock.now(), "late")


# --- Never lost: the broker, the commit, the sweeper ----------------------------------------------


def test_with_the_broker_down_the_signup_answers_and_the_sweeper_sends_the_email_later(
    client, next_cohort, monkeypatch, caplog
):
    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with monkeypatch.context() as outage:
        outage.setattr(learner_email_send, "apply_async", broker_down)
        with caplog.at_level(logging.WARNING, logger="signups.emails"):
            response = client.post("/signup/", form_data(cohort=next_cohort.slug))

    assert response.status_code == 302
    assert "not queued, the broker is unreachable" in caplog.text
    email = the_email()
    assert (email.status, email.queued_at) == ("pending", None)
    assert not mail.outbox

    learner_emails_requeue.apply()  # beat's next minute, the broker back

    [message] = mail.outbox
    assert message.to == [ADA]
    assert the_email().status == "sent"


def test_the_sweeper_queues_a_lost_message_again_but_not_a_recent_one(next_cohort, held_messages, clock):
    lost, recent = EnrollmentFactory.create_batch(2, cohort=next_cohort)
    _send(lost.learner, "manage_link", {})  # its message is lost: held, never delivered
    clock.shift(email_rows.REQUEUE_AFTER + datetime.timedelta(seconds=1))
    _send(recent.learner, "manage_link", {})  # on its way, a moment ago
    held_messages.clear()

    learner_emails_requeue.apply()
    learner_emails_requeue.apply()  # a minute later, say: queued once, not every pass

    [(email_id, eta)] = held_messages
    assert email_id == LearnerEmail.objects.get(learner=lost.learner).pk and eta is None


def test_a_retry_waiting_for_its_moment_is_not_queued_again(client, next_cohort, provider, held_messages, clock):
    provider[ADA] = [unavailable()]
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    learner_email_send.apply(args=[the_email().pk])
    held_messages.clear()

    clock.shift(datetime.timedelta(minutes=3))  # due, and its message runs about now
    learner_emails_requeue.apply()
    assert held_messages == []

    clock.shift(email_rows.REQUEUE_AFTER)  # its message never came
    learner_emails_requeue.apply()
    assert [email_id for email_id, _ in held_messages] == [the_email().pk]


@pytest.mark.django_db(transaction=True)
def test_the_task_is_queued_after_the_commit_and_never_for_a_rollback(next_cohort, held_messages):
    learner = EnrollmentFactory(cohort=next_cohort).learner

    with transaction.atomic():
        _send(learner, "manage_link", {})
        assert held_messages == []  # not before the row is committed
    assert held_messages == [(the_email().pk, None)]

    held_messages.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        _send(learner, "manage_link", {})
        raise RuntimeError("the request failed after the email was written")
    assert held_messages == []
    assert LearnerEmail.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_each_service_queues_only_after_its_own_transaction(client, next_cohort, later_cohort, monkeypatch, clock):
    """In production (real commits): the task never finds its row missing."""
    from django.db import connection

    seen = []
    original = emails.learner_email_enqueue

    def enqueue(email_id, eta=None):
        seen.append((connection.in_atomic_block, LearnerEmail.objects.filter(pk=email_id).exists()))
        return original(email_id, eta)

    monkeypatch.setattr(emails, "learner_email_enqueue", enqueue)
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    client.post(confirm_link(mail.outbox[0]))
    clock.shift(datetime.timedelta(minutes=11))
    client.post("/signup/", form_data(cohort=later_cohort.slug))  # already enrolled: their manage link
    assert seen == [(False, True), (False, True)]
    assert len(mail.outbox) == 2
