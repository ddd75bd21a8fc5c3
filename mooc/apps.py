from django.apps import AppConfig


class MoocConfig(AppConfig):
    """The project package itself, installed only for its development commands (dev_admin)."""

    name = "mooc"
    verbose_name = "Mechanical MOOC"
