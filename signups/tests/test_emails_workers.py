"""Issue 13 with real processes: on PostgreSQL, with a real Celery worker on Redis, a signup
answers while the provider hangs, and the confirmation arrives once the provider answers."""

import email
import email.policy
import time
import uuid

import pytest

from mooc.testing.fixtures import wait_for
from signups.models import LearnerEmail
from signups.tasks import learner_email_send
from signups.tests.test_signup import confirm_link, form_data

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

HANG_SECONDS = "5"


def delivered(outbox) -> list:
    return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in outbox.glob("*.eml")]


@pytest.fixture
def transactional_worker(celery_workers, tmp_path, monkeypatch):
    """A real worker on a queue of its own, with a provider that hangs HANG_SECONDS on every call;
    the learner emails this process queues go there. Yields the provider's outbox folder."""
    outbox = tmp_path / "outbox"
    queue = f"test-{uuid.uuid4().hex[:12]}"
    celery_workers(
        queue, EMAIL_BACKEND="mooc.testing.providers.FileProviderBackend", EMAIL_OUTBOX_DIR=str(outbox),
        FAKE_PROVIDER_DELAY=HANG_SECONDS,
    )
    publish = learner_email_send.apply_async  # the same publish, to this test's queue
    monkeypatch.setattr(learner_email_send, "apply_async", lambda *args, **options: publish(*args, **(options | {"queue": queue})))
    return outbox


def test_a_signup_answers_while_the_provider_hangs_and_the_confirmation_arrives_when_it_answers(
    client, next_cohort, transactional_worker
):
    outbox = transactional_worker
    client.get("/")  # a first request: templates loaded, connections opened
    started = time.monotonic()
    response = client.post("/signup/", form_data(cohort=next_cohort.slug))
    answered_in = time.monotonic() - started

    assert response.status_code == 302 and response["Location"] == "/signup/sent/"
    assert not outbox.exists() or not delivered(outbox)  # the answer came before the provider took it
    # The worker has it, and the provider hangs on it, while the signup is long answered.
    assert wait_for(lambda: LearnerEmail.objects.filter(status="sending").exists(), timeout=60), "no worker took the email"
    assert not outbox.exists() or not delivered(outbox)

    assert wait_for(lambda: LearnerEmail.objects.filter(status="sent").exists(), timeout=60), "the email was not sent"
    [message] = delivered(outbox)
    assert message["To"] == "ada.lovelace@example.org" and message["Subject"].startswith("Confirm")
    print(f"the signup answered in {answered_in:.3f} s; the provider hung {HANG_SECONDS} s")

    class Sent:  # confirm_link reads a message's body
        body = message.get_body(preferencelist=("plain",)).get_content()

    assert client.post(confirm_link(Sent)).status_code == 200
    assert LearnerEmail.objects.get().attempts == 1
