from django.db import models


class Heartbeat(models.Model):
    """The last time a periodic job reached a worker and the database.

    Beat queues the heartbeat task every minute and a worker records it here, so its age
    tells whether beat, the broker and the workers are all running.
    """

    name = models.SlugField(max_length=50, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} at {self.seen_at:%Y-%m-%d %H:%M:%S}"
