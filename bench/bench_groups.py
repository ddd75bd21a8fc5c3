"""Group formation: how long and how much memory sorting a cohort into study groups takes.

For 1,000, 10,000 and 100,000 confirmed learners spread over real time zones with a
realistic skew (most in the Americas and Europe, a long tail elsewhere, including both
sides of the date line) and mixed experience, it times `cohort_groups_form` as the admin
action and the beat job run it: reading the learners, the algorithm, and writing the groups
and memberships to the database. Target: 100,000 in under 10 s and 500 MB, every group
within [min, max], at least 95% of groups within 2 hours of spread.

Memory is the process's resident size sampled every 5 ms during formation (peak, and how
much above the size before it). Each size runs in its own process on a fresh database: SQLite, then PostgreSQL when the
server at BENCH_POSTGRES_URL answers (see _common.py).
"""

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import django_on_throwaway_database, postgres_unavailable, print_results

SIZES = (1_000, 10_000, 100_000)
# (time zone, weight): roughly where MOOC learners live, with a long tail.
TIME_ZONES = [
    ("America/New_York", 18), ("America/Chicago", 10), ("America/Los_Angeles", 9), ("America/Denver", 3),
    ("America/Sao_Paulo", 5), ("America/Mexico_City", 4), ("America/Bogota", 2), ("America/Toronto", 3),
    ("Europe/London", 8), ("Europe/Berlin", 6), ("Europe/Madrid", 4), ("Europe/Paris", 4), ("Europe/Warsaw", 2),
    ("Europe/Kyiv", 1.5), ("Europe/Istanbul", 1), ("Africa/Lagos", 2), ("Africa/Nairobi", 1), ("Africa/Cairo", 1),
    ("Asia/Kolkata", 6), ("Asia/Dubai", 1), ("Asia/Karachi", 1), ("Asia/Dhaka", 0.5), ("Asia/Jakarta", 1),
    ("Asia/Shanghai", 1.5), ("Asia/Tokyo", 1), ("Asia/Manila", 1), ("Australia/Sydney", 1), ("Pacific/Auckland", 0.3),
    ("Pacific/Tongatapu", 0.05), ("Pacific/Honolulu", 0.2), ("Pacific/Pago_Pago", 0.05), ("Asia/Kathmandu", 0.1),
]
EXPERIENCE = [("none", 5), ("some", 3), ("experienced", 2)]


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakMemory:
    """The process's peak resident size while the block runs, sampled in a thread."""

    def __enter__(self):
        self.before = self.peak = _rss_mb()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while self._running:
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def measure(size: int, database: str) -> None:
    with django_on_throwaway_database(database):
        # Imported only now: Django must not read its settings before the environment is set.
        import datetime

        from django.db import connection
        from django.test.utils import CaptureQueriesContext
        from django.utils import timezone

        from cohorts.models import Cohort, Course
        from signups.groups import cohort_groups_form
        from signups.models import Enrollment, Learner

        rng = random.Random(size)
        start = timezone.now().date() + datetime.timedelta(days=1)
        course = Course.objects.create(title="Bench course", slug="bench", week_count=8)
        cohort = Cohort.objects.create(
            course=course, name="Bench round", slug="bench-round", start_date=start,
            signup_opens_on=start - datetime.timedelta(weeks=4), signup_closes_on=start,
        )
        zones, zone_weights = zip(*TIME_ZONES)
        levels, level_weights = zip(*EXPERIENCE)
        now = timezone.now()
        learners = Learner.objects.bulk_create(
            [
                Learner(email=f"l{n}@bench.invalid", timezone=zone, experience=level, confirmed_at=now)
                for n, (zone, level) in enumerate(zip(rng.choices(zones, zone_weights, k=size), rng.choices(levels, level_weights, k=size)))
            ],
            batch_size=5000,
        )
        Enrollment.objects.bulk_create(
            [Enrollment(learner=learner, course=course, cohort=cohort, status="active") for learner in learners],
            batch_size=5000,
        )

        with PeakMemory() as memory, CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            quality = cohort_groups_form(cohort, now=now)
            seconds = time.perf_counter() - started

        grouped = Enrollment.objects.filter(group__isnull=False).count()
        within_bounds = all(cohort.group_size_min <= row.size <= cohort.group_size_max for row in quality.groups)

    print_results(
        f"group formation on {database}: {size:,} confirmed learners",
        [
            ("time", f"{seconds:.2f}", "s (read learners, group, write groups and memberships)"),
            ("peak memory", f"{memory.peak:.0f}", f"MB resident ({memory.peak - memory.before:+.0f} MB during formation)"),
            ("SQL queries", str(len(queries)), "(none per learner)"),
            ("groups", f"{len(quality.groups):,}", f"of {quality.smallest} to {quality.largest} (bounds {cohort.group_size_min}-{cohort.group_size_max}: {'all within' if within_bounds else 'NOT all within'})"),
            ("within 2 hours", f"{quality.share_within_good_spread:.1%}", "of groups"),
            ("left ungrouped", f"{quality.ungrouped}", f"({grouped:,} memberships written)"),
        ],
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--size":
        measure(int(sys.argv[2]), sys.argv[3])
        return
    for database in ("sqlite", "postgresql"):
        if database == "postgresql" and (reason := postgres_unavailable()):
            print(f"group formation on postgresql: skipped, {reason}\n")
            continue
        for size in SIZES:
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--size", str(size), database], check=True)


if __name__ == "__main__":
    main()
