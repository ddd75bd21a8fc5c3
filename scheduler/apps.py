from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    """What is due, rendering and sending, the delivery ledger; in development, the local outbox."""

    name = "scheduler"

    def ready(self):
        from scheduler.selectors import learners_quiet
        from signups import groups

        # Re-forming groups asks who is quiet; signups never imports the scheduler, so the
        # scheduler tells it (signups/groups.py, QUIET_LEARNERS).
        if learners_quiet not in groups.QUIET_LEARNERS:
            groups.QUIET_LEARNERS.append(learners_quiet)
