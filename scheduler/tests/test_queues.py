"""The periodic jobs and the send chunks travel on separate queues (README: one worker for each)."""

import pytest

from mooc.celery import app


@pytest.mark.parametrize(
    "task, queue",
    [
        ("scheduler.tasks.deliveries_dispatch_due", "celery"),
        ("scheduler.tasks.heartbeat", "celery"),
        ("signups.tasks.groups_form_due", "celery"),
        ("scheduler.tasks.deliveries_send_chunk", "mail"),
        ("signups.tasks.waitlist_invite_due", "celery"),
        ("signups.tasks.waitlist_invite_cohort", "mail"),
        ("signups.tasks.learner_emails_requeue", "celery"),
        ("signups.tasks.learner_email_send", "transactional"),
        ("scheduler.tasks.email_test_send", "transactional"),
        ("signups.tasks.learner_import_preview", "mail"),
        ("signups.tasks.learner_import_apply", "mail"),
        ("signups.tasks.learner_bulk_action_run", "mail"),
    ],
)
def test_each_task_goes_to_its_queue(task, queue, settings):
    route = app.amqp.router.route({}, task)
    assert route["queue"].name == queue
    if queue == "mail":
        assert settings.DELIVERY_QUEUE == queue  # where dispatch sends the chunks
    if queue == "transactional":
        assert settings.TRANSACTIONAL_QUEUE == queue


def test_a_send_task_is_killed_before_another_may_claim_its_email():
    from signups.email_rows import CLAIM_TIMEOUT, SEND_TIME_LIMIT
    from signups.tasks import learner_email_send

    assert learner_email_send.time_limit == SEND_TIME_LIMIT.total_seconds() < CLAIM_TIMEOUT.total_seconds()
    assert learner_email_send.soft_time_limit < learner_email_send.time_limit


def test_every_worker_in_the_readme_and_procfile_covers_every_queue():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for text in (root / "README.md").read_text(), (root / "Procfile.dev").read_text():
        for queue in ("celery", "mail", "transactional"):
            assert f"--queues={queue} " in text, queue


def test_every_periodic_job_is_on_the_jobs_queue():
    for name, entry in app.conf.beat_schedule.items():
        assert app.amqp.router.route({}, entry["task"])["queue"].name == "celery", name
