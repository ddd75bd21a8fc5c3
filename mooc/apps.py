from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


class MoocConfig(AppConfig):
    """The project package itself: its development commands (dev_admin) and the staff roles."""

    name = "mooc"
    verbose_name = "Mechanical MOOC"

    def ready(self):
        from mooc.permissions import roles_sync_after_migrate

        # post_migrate is sent (after every migrate and flush) only for apps with models, which
        # mooc has none of: listen for auth's, once per run.
        post_migrate.connect(roles_sync_after_migrate, sender=apps.get_app_config("auth"), dispatch_uid="mooc.roles_sync")
