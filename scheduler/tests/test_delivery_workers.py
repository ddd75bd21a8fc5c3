"""Exactly once with real processes: on PostgreSQL, with real Celery workers on Redis."""

import datetime
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from cohorts.models import Cohort
from mooc.testing.fixtures import PROJECT_DIR, environment_for_other_processes, wait_for
from scheduler.ledger import rows_reclaim
from scheduler.planning import deliveries_dispatch
from scheduler.models import Delivery
from scheduler.tasks import deliveries_send_chunk
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cohort_of_learners(settings, clock):
    from cohorts.services import DEMO_COURSE_FILE, course_create_from_definition, course_definition_read
    from scheduler.services import email_templates_install_defaults

    course, _ = course_create_from_definition(course_definition_read(DEMO_COURSE_FILE))
    email_templates_install_defaults(course)
    start = clock.today() - datetime.timedelta(days=1)
    # Week 1 began yesterday, and its email was due at midnight on the day it began.
    cohort = Cohort.objects.create(course=course, name="Now", slug="now", start_date=start,
                                   signup_opens_on=start - datetime.timedelta(weeks=2), signup_closes_on=start,
                                   send_weekday=start.weekday(), send_time=datetime.time(0, 0))
    long_ago = clock.now() - datetime.timedelta(days=30)  # no welcome email in the way
    for number in range(40):
        EnrollmentFactory(cohort=cohort, learner__email=f"learner{number}@example.org", learner__timezone="Pacific/Kiritimati",
                          learner__confirmed_at=long_ago)
    return cohort


def provider_env(outbox: Path, delay: str = "0") -> dict[str, str]:
    return {
        "EMAIL_BACKEND": "mooc.testing.providers.FileProviderBackend",
        "EMAIL_OUTBOX_DIR": str(outbox),
        "FAKE_PROVIDER_DELAY": delay,
        "EMAIL_SEND_RATE_PER_SECOND": "0",
        "DELIVERY_CHUNK_SIZE": "10",
    }


def mails_per_recipient(outbox: Path) -> Counter:
    import email
    import email.policy

    return Counter(
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["To"] for path in outbox.glob("*.eml")
    )


def kill_inside_a_provider_call_mid_chunk(worker: subprocess.Popen) -> None:
    """SIGKILL `worker` while it is inside a provider call with rows of its chunk still to go.

    The worker is frozen (SIGSTOP) first and the ledger read while it cannot move: a row
    SENDING with provider_call_at set is the call in flight; a SENDING row without it is the
    rest of the chunk. If the freeze fell between calls or at a chunk's last row, the worker
    is let go on (SIGCONT) and caught at a later call, so the test never depends on timing.
    """
    in_flight = Delivery.objects.filter(status="sending", provider_call_at__isnull=False)
    still_to_go = Delivery.objects.filter(status="sending", provider_call_at__isnull=True)
    for _ in range(100):
        assert wait_for(in_flight.exists, timeout=60, interval=0.02), "no provider call seen in flight"
        os.kill(worker.pid, signal.SIGSTOP)
        time.sleep(0.2)  # a statement the worker sent just before the freeze lands in the database
        if in_flight.exists() and still_to_go.exists():
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            return
        os.kill(worker.pid, signal.SIGCONT)
    raise AssertionError("never caught the worker inside a provider call mid-chunk")


def test_two_send_due_passes_at_once_send_each_email_once(cohort_of_learners, tmp_path):
    outbox = tmp_path / "outbox"
    command = [sys.executable, "manage.py", "send_due"]
    environment = environment_for_other_processes(**provider_env(outbox, delay="0.01"))
    passes = [subprocess.Popen(command, cwd=PROJECT_DIR, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    outputs = [process.communicate(timeout=120)[0] for process in passes]

    assert all(process.returncode == 0 for process in passes), outputs
    rows = Delivery.objects.filter(cohort=cohort_of_learners, kind="week", week_number=1)
    assert rows.count() == 40 and set(rows.values_list("status", flat=True)) == {"sent"}
    sent = mails_per_recipient(outbox)
    assert len(sent) == 40 and set(sent.values()) == {1}, sent


def test_a_worker_killed_mid_chunk_leaves_every_learner_mailed_once_but_the_one_in_flight(
    cohort_of_learners, celery_workers, tmp_path, settings, clock
):
    settings.DELIVERY_CHUNK_SIZE = 10
    outbox = tmp_path / "outbox"
    queue = f"test-{uuid.uuid4().hex[:12]}"
    first = celery_workers(queue, **provider_env(outbox, delay="0.3"))
    report = deliveries_dispatch(clock.now())
    assert len(report.chunks) == 4
    for chunk in report.chunks:
        deliveries_send_chunk.apply_async(args=[chunk], queue=queue)

    assert wait_for(lambda: Delivery.objects.filter(status="sent").count() >= 3, timeout=60)
    kill_inside_a_provider_call_mid_chunk(first)
    stuck = Delivery.objects.filter(status="sending")
    assert stuck.filter(provider_call_at__isnull=False).count() == 1 and stuck.filter(provider_call_at__isnull=True).exists()

    # Later, the reclaim notices; a new worker sends the rest.
    later = clock.now() + django_settings.DELIVERY_SENDING_TIMEOUT + datetime.timedelta(minutes=1)
    returned, ambiguous = rows_reclaim(later)
    assert ambiguous == 1 and returned >= 1
    celery_workers(queue, **provider_env(outbox))
    for chunk in deliveries_dispatch(later).chunks:
        deliveries_send_chunk.apply_async(args=[chunk], queue=queue)
    assert wait_for(lambda: not Delivery.objects.filter(status__in=["pending", "sending"]).exists(), timeout=90)

    rows = Delivery.objects.filter(cohort=cohort_of_learners, kind="week", week_number=1)
    failed = list(rows.filter(status="failed"))
    assert len(failed) == ambiguous and all(row.reason_code == "ambiguous" for row in failed)
    assert rows.filter(status="sent").count() == 40 - len(failed)
    sent = mails_per_recipient(outbox)
    ambiguous_addresses = {row.learner.email for row in failed}
    for number in range(40):
        address = f"learner{number}@example.org"
        if address in ambiguous_addresses:
            assert sent[address] <= 1  # the one in flight: delivered or not, never twice
        else:
            assert sent[address] == 1, (address, sent[address])
