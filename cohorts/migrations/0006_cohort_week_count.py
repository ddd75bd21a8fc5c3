"""Each round keeps its own number of weeks, copied from its course (existing rounds: the course's today)."""

import django.core.validators
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_week_count(apps, schema_editor):
    Cohort = apps.get_model("cohorts", "Cohort")
    Course = apps.get_model("cohorts", "Course")
    Cohort.objects.update(week_count=Subquery(Course.objects.filter(pk=OuterRef("course_id")).values("week_count")[:1]))


class Migration(migrations.Migration):
    dependencies = [("cohorts", "0005_cohort_sending_paused_reason")]

    operations = [
        migrations.AddField(
            model_name="cohort", name="week_count",
            field=models.PositiveSmallIntegerField(null=True, editable=False),
        ),
        migrations.RunPython(copy_week_count, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="cohort", name="week_count",
            field=models.PositiveSmallIntegerField(
                "number of weeks", blank=True, editable=False,
                help_text="Copied from the course; follows it until the round starts.",
                validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(52)],
            ),
        ),
    ]
