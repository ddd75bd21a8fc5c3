from django.db import migrations, models

from mooc.migration_operations import AddIndexConcurrentlyWherePossible


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; the ledger keeps taking writes meanwhile.
    atomic = False

    dependencies = [
        ('scheduler', '0010_tracking_events'),
    ]

    operations = [
        AddIndexConcurrentlyWherePossible(
            model_name='delivery',
            index=models.Index(condition=models.Q(('kind', 'week'), ('opened_at__isnull', False)), fields=['cohort', 'learner', 'week_number'], name='delivery_opened_week'),
        ),
    ]
