from django.db import migrations, models

from mooc.migration_operations import AddIndexConcurrentlyWherePossible


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; the ledger keeps taking writes meanwhile.
    atomic = False

    dependencies = [
        ('scheduler', '0013_tracking_event_as_received'),
    ]

    operations = [
        AddIndexConcurrentlyWherePossible(
            model_name='delivery',
            index=models.Index(
                fields=['cohort', 'kind', 'week_number'], include=['status', 'delivered_at', 'opened_at', 'clicked_at', 'bounced_at'],
                name='delivery_cohort_counts',
            ),
        ),
    ]
