"""When each enrollment became mailable, the round a learner dropped back from, and waitlist invitations.

Existing current enrollments count as mailable since they were confirmed (or created, when later).
"""

import django.db.models.deletion
from django.db import migrations, models


def mailable_since_backfill(apps, schema_editor):
    Enrollment = apps.get_model("signups", "Enrollment")
    current = Enrollment.objects.filter(status__in=["active", "paused"], learner__confirmed_at__isnull=False)
    for enrollment in current.select_related("learner").only("pk", "created_at", "learner__confirmed_at").iterator(chunk_size=2000):
        since = max(enrollment.created_at, enrollment.learner.confirmed_at)
        Enrollment.objects.filter(pk=enrollment.pk).update(mailable_since=since)


class Migration(migrations.Migration):
    dependencies = [
        ("cohorts", "0006_cohort_week_count"),
        ("signups", "0004_permissions_for_actions"),
    ]

    operations = [
        migrations.AddField(model_name="enrollment", name="mailable_since", field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(
            model_name="enrollment", name="switched_from",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="cohorts.cohort"),
        ),
        migrations.AddField(
            model_name="enrollment", name="invited_to",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="cohorts.cohort"),
        ),
        migrations.AddField(model_name="enrollment", name="invited_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.RunPython(mailable_since_backfill, migrations.RunPython.noop),
    ]
