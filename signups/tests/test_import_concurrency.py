"""An import being applied holds its locks one batch at a time: a signup meanwhile goes through (PostgreSQL)."""

import threading
import time

import pytest

from mooc.testing.threads import in_threads
from signups import import_jobs
from signups.models import Enrollment, Learner, LearnerImport
from signups.selectors import cohort_seats_taken
from signups.services import Signup, learner_signup

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_signup_while_an_import_is_applied_waits_for_one_batch_not_for_the_import(next_cohort, settings, clock, monkeypatch, worker):
    # `worker` holds back the queued tasks (the suite runs them eagerly): the apply runs in a thread below.
    settings.LEARNER_IMPORT_BATCH_SIZE = 50
    next_cohort.capacity = 1001  # the file's thousand and the signup: exactly full, if every seat is counted once
    next_cohort.save()
    content = ("email,timezone,experience\n" + "".join(f"l{n}@example.org,UTC,none\n" for n in range(1000))).encode()
    job = LearnerImport.objects.create(cohort=next_cohort, file_size=len(content), content=content, confirmed=True)
    import_jobs.learner_import_preview(job.pk, now=clock.now())
    assert import_jobs.learner_import_apply_request(job, now=clock.now())

    batches: list[int] = []
    under_way = threading.Event()
    batch_done = import_jobs._Progress.batch_done

    def slow_batch_done(self, rows_done, outcome):
        batch_done(self, rows_done, outcome)
        batches.append(rows_done)
        under_way.set()
        time.sleep(0.05)  # still inside the batch's transaction: its locks are held meanwhile

    monkeypatch.setattr(import_jobs._Progress, "batch_done", slow_batch_done)
    signed_up = {}

    def sign_up():
        assert under_way.wait(timeout=10)
        started = time.monotonic()
        learner_signup(
            Signup(email="hedy@example.org", first_name="Hedy", timezone="Europe/Vienna", experience="some",
                   wants_group=True, course=next_cohort.course, cohort=next_cohort),
            now=clock.now(),
        )
        signed_up.update(seconds=time.monotonic() - started, batches_before=len(batches))

    errors = in_threads(lambda: import_jobs.learner_import_apply(job.pk, now=clock.now()), sign_up, timeout=60)

    assert errors == []
    job.refresh_from_db()
    assert (job.status, job.added, job.refused) == ("applied", 1000, 0)
    # The signup waited for the batch under way at most (each holds its locks ~0.05 s here),
    # and was done long before the import's 20 batches were.
    assert signed_up["seconds"] < 1
    assert signed_up["batches_before"] < 15
    assert Enrollment.objects.get(learner__email="hedy@example.org").cohort == next_cohort
    assert Learner.objects.count() == 1001
    assert cohort_seats_taken(next_cohort, clock.now()) == next_cohort.capacity
