# Re-forming by activity (issue 16): when a learner in a quiet group was offered a move.
# Numbered 0013: 0012 is another part of issue 16's; on merging, this one follows it.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("signups", "0011_checkin"),
    ]

    operations = [
        migrations.AddField(
            model_name="enrollment",
            name="group_move_offered_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
