"""The three staff roles (Organizer, Course editor, Viewer): see mooc/permissions.py."""

from django.db import migrations


def roles_create(apps, schema_editor):
    from mooc.permissions import roles_sync

    roles_sync(apps)


def roles_delete(apps, schema_editor):
    from mooc.permissions import ROLES

    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("cohorts", "0004_permissions_for_actions"),
        ("signups", "0004_permissions_for_actions"),
        ("scheduler", "0006_permissions_for_actions"),
    ]

    operations = [migrations.RunPython(roles_create, roles_delete)]
