"""Who may do what in the admin: the three staff roles, and actions that name their permission.

Roles are Django groups whose permissions the code defines (ROLES). A data migration creates
them, and every `migrate` puts their permissions back in step with ROLES (post_migrate, see
mooc/apps.py): a permission added to the code reaches the role on the next deploy, one removed
leaves it. Give a person one or more of these groups; for another mix, make a group of your own
(these three are rewritten on every migrate).

Every admin action that changes learners' mail declares a permission by its full name
(`admin_action(permission="cohorts.close_signup", ...)`). Django's admin offers an action only to
users for whom `has_<name>_permission(request)` holds and refuses it otherwise;
`ActionPermissionsMixin` answers those questions for full names, so an app can add an action to
another app's admin (signups' "form groups" on the cohort admin) and still name its own permission.
"""

from django.apps import apps as global_apps
from django.contrib import admin

ORGANIZER = "Organizer"
COURSE_EDITOR = "Course editor"
VIEWER = "Viewer"

_READ_COURSES = ["cohorts.view_course", "cohorts.view_week", "cohorts.view_cohort", "cohorts.view_studygroup"]
_READ_TEMPLATES = ["scheduler.view_emailtemplate", "scheduler.view_emailtemplateversion"]

ROLES: dict[str, list[str]] = {
    # Runs cohorts and learners: starts rounds, forms groups, sends, pauses, imports, moves.
    ORGANIZER: [
        *_READ_COURSES,
        *_READ_TEMPLATES,
        "cohorts.add_cohort", "cohorts.change_cohort", "cohorts.change_studygroup",
        "cohorts.start_next_round", "cohorts.close_signup", "cohorts.pause_sending", "cohorts.form_groups",
        "signups.view_learner", "signups.change_learner", "signups.view_enrollment", "signups.view_checkin",
        "signups.resend_confirmation", "signups.move_learner", "signups.unsubscribe_learner", "signups.import_learners",
        "signups.lift_suppression",
        "signups.view_suppression", "signups.view_erasure",
        "signups.view_learneremail", "signups.retry_learneremail",
        "scheduler.view_delivery", "scheduler.send_week_now", "scheduler.resend_failed",
        "scheduler.view_trackingevent",
        "groupmail.view_groupmessage", "groupmail.review_groupmessage", "groupmail.mute_member",
        "groupmail.close_group_mail",
    ],
    # Edits courses, weeks and email templates; sees no learner data.
    COURSE_EDITOR: [
        *_READ_COURSES,
        *_READ_TEMPLATES,
        "cohorts.add_course", "cohorts.change_course",
        "cohorts.add_week", "cohorts.change_week", "cohorts.delete_week",
        "scheduler.add_emailtemplate", "scheduler.change_emailtemplate",
    ],
    # Reads counts and templates; changes nothing.
    VIEWER: [*_READ_COURSES, *_READ_TEMPLATES],
}


def roles_sync(apps=global_apps) -> None:
    """Create the roles that are missing and set each one's permissions to exactly ROLES.

    `apps` is the app registry: the real one after `migrate`, the historical one in the data
    migration. Permissions are created first (Django creates them only after all migrations).
    """
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        # The historical registry leaves models_module unset, which create_permissions skips.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module
    group_model = apps.get_model("auth", "Group")
    permissions = {
        f"{permission.content_type.app_label}.{permission.codename}": permission
        for permission in apps.get_model("auth", "Permission").objects.select_related("content_type")
    }
    for name, wanted in ROLES.items():
        role, _ = group_model.objects.get_or_create(name=name)
        # A database migrated only part of the way lacks later permissions: those come with the rest.
        role.permissions.set([permissions[full_name] for full_name in wanted if full_name in permissions])


def roles_sync_after_migrate(sender, apps=global_apps, **kwargs) -> None:
    roles_sync(apps)


# --- Admin actions that name the permission they need ----------------------------------------


def admin_action(*, permission: str, description: str):
    """`@admin.action` for an action only users with `permission` ("app_label.codename") may run."""
    app_label, codename = permission.split(".")
    return admin.action(description=description, permissions=[f"{app_label}__{codename}"])


class ActionPermissionsMixin:
    """Answers the admin's `has_<app_label>__<codename>_permission(request)` for admin_action."""

    def __getattr__(self, name):
        if name.startswith("has_") and name.endswith("_permission") and "__" in name:
            app_label, codename = name.removeprefix("has_").removesuffix("_permission").split("__", 1)
            return lambda request, obj=None: request.user.has_perm(f"{app_label}.{codename}")
        raise AttributeError(name)
