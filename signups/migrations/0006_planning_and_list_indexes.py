"""Indexes for dispatch's per-minute questions and the learner list's order, built without
locking the tables on PostgreSQL (CREATE INDEX CONCURRENTLY, outside a transaction)."""

from django.db import migrations, models

from mooc.migration_operations import AddIndexConcurrentlyWherePossible


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("signups", "0005_enrollment_mailable_since_and_more")]

    operations = [
        AddIndexConcurrentlyWherePossible(
            model_name="enrollment", index=models.Index(fields=["cohort", "mailable_since"], name="enrollment_cohort_mailable"),
        ),
        AddIndexConcurrentlyWherePossible(
            model_name="enrollment", index=models.Index(fields=["cohort", "grouped_at"], name="enrollment_cohort_grouped"),
        ),
        AddIndexConcurrentlyWherePossible(
            model_name="learner", index=models.Index(fields=["-created_at"], name="learner_newest_first"),
        ),
    ]
