"""The Celery application: configured from Django settings (CELERY_*), tasks autodiscovered.

Beat runs with django-celery-beat's database scheduler, so organizers can see and pause
periodic jobs in the admin; the schedule below is written to the database at beat start-up.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mooc.settings")

app = Celery("mooc")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # The teacher: put every email that fell due in the ledger and queue it for the workers.
    "deliveries-dispatch": {
        "task": "scheduler.tasks.deliveries_dispatch_due",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Learners' emails (signups/emails.py) whose task message was lost, or never reached the
    # broker, are queued again: an outage delays them, never loses them.
    "learner-emails-requeue": {
        "task": "signups.tasks.learner_emails_requeue",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Each cohort's groups are formed on its formation date (default: the day before it starts).
    "groups-form-due": {
        "task": "signups.tasks.groups_form_due",
        "schedule": 60 * 60.0,
        "options": {"expires": 55 * 60},
    },
    # Rounds that re-form by activity: from week 3, learners who did the last two weeks while
    # their group went quiet are offered a move into an active group (each once per round).
    # Hourly: an offer follows the check-ins that make a learner eligible within the hour.
    "group-move-offers": {
        "task": "signups.tasks.group_move_offers_due",
        "schedule": 60 * 60.0,
        "options": {"expires": 55 * 60},
    },
    # A round that opens (its signup window begins, or an organizer creates one open today)
    # invites its course's waitlist within a quarter of an hour; each learner once per round.
    "waitlist-invite": {
        "task": "signups.tasks.waitlist_invite_due",
        "schedule": 15 * 60.0,
        "options": {"expires": 14 * 60},
    },
    # The providers' tracking events are applied as they arrive (each webhook queues the task);
    # this catches what a lost task or an unreachable broker left, within a minute.
    "tracking-events-apply": {
        "task": "scheduler.tasks.tracking_events_apply",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Members' messages to their groups are screened as they arrive (each one queues the task);
    # this catches what a lost task or an unreachable broker left, and forgets old envelopes.
    "group-mail-screen": {
        "task": "groupmail.tasks.inbound_screen_waiting",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
}


@app.on_after_configure.connect
def _heartbeat_per_queue(sender, **kwargs):
    """Proves, every minute, that beat, the broker, each queue's worker and the database work
    together: one heartbeat per queue in WORKER_QUEUES ("worker-heartbeat" for the default
    queue, "worker-heartbeat-<queue>" for the others); /healthz and the admin show their ages.

    Added once the configuration is read, not at import: importing this package must not need
    Django's settings (`python -m mooc.testing.clock` runs without them)."""
    from django.conf import settings

    sender.conf.beat_schedule.update({
        "worker-heartbeat" + ("" if queue == settings.CELERY_TASK_DEFAULT_QUEUE else f"-{queue}"): {
            "task": "scheduler.tasks.heartbeat",
            "schedule": 60.0,
            "args": [queue],
            "options": {"queue": queue, "expires": 55},
        }
        for queue in settings.WORKER_QUEUES
    })
