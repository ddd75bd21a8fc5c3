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


def test_every_periodic_job_is_on_the_jobs_queue():
    for name, entry in app.conf.beat_schedule.items():
        assert app.amqp.router.route({}, entry["task"])["queue"].name == "celery", name
