from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    """What is due, rendering and sending, the delivery ledger; in development, the local outbox."""

    name = "scheduler"
