"""How long `load_demo` takes on an empty database, and again once the demo is there.

`make run` calls it on every start: the second run (a no-op by design) is what a developer
waits for each time, the first run (the course, its 8 weeks and 2 cohorts) what a fresh
database pays once. Both are timed in-process with call_command, after one untimed round
that imports everything, so Python and Django start-up are left out. Before each first run
the demo's rows are deleted (committed), which gives back the empty, migrated database.
Peak memory is measured with tracemalloc on a separate first run, because tracing slows it.
"""

import io
import statistics
import tracemalloc

from _common import django_on_throwaway_database, milliseconds, print_results, timed

REPEATS = 10


def main() -> None:
    with django_on_throwaway_database():
        # Imported only now: Django must not read its settings before the environment is set.
        from django.core.management import call_command
        from django.db import transaction

        from cohorts.models import Cohort, Course, Week

        def load_demo() -> None:
            call_command("load_demo", stdout=io.StringIO())

        def demo_delete() -> None:
            with transaction.atomic():
                Cohort.objects.all().delete()  # cohorts protect their course, so they go first
                Course.objects.all().delete()  # its weeks go with it

        load_demo()
        created = (Course.objects.count(), Week.objects.count(), Cohort.objects.count())
        if created != (1, 8, 2):
            raise SystemExit(f"bench_load_demo: expected 1 course, 8 weeks, 2 cohorts; got {created}")
        load_demo()

        first_runs, second_runs = [], []
        for _ in range(REPEATS):
            demo_delete()
            first_runs.append(timed(load_demo))
            second_runs.append(timed(load_demo))

        demo_delete()
        tracemalloc.start()
        load_demo()
        _, peak_bytes = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    print_results(
        f"load_demo (first run on an empty migrated database, then the no-op second run; {REPEATS} each)",
        [
            ("first run, median", milliseconds(statistics.median(first_runs)), "ms"),
            ("first run, min", milliseconds(min(first_runs)), "ms"),
            ("second run, median", milliseconds(statistics.median(second_runs)), "ms"),
            ("second run, min", milliseconds(min(second_runs)), "ms"),
            ("first run, peak memory", f"{peak_bytes / 1024:.0f}", "KiB (tracemalloc)"),
        ],
    )


if __name__ == "__main__":
    main()
