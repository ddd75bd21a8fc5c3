"""Requests per second of the landing page, GET /, through the whole Django stack.

Every visitor and every signup starts on this page, so it is the page most worth keeping fast.
Each request goes through django.test.Client's handler (no network, no web server): middleware,
URL resolving, the view and its selectors' SQL, and template rendering, with DEBUG off, against
the demo course (`load_demo`: 8 weeks, 2 cohorts). The client keeps one database connection
for all requests, as CONN_MAX_AGE does in production. The SQL query count per request shows
an N+1 creeping in (a query per week, say) long before the timings do.
"""

import io
import statistics
import time

from _common import django_on_throwaway_database, milliseconds, percentile, print_results, timed

WARMUP_REQUESTS = 20
MEASURED_REQUESTS = 500


def main() -> None:
    with django_on_throwaway_database():
        # Imported only now: Django must not read its settings before the environment is set.
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        call_command("load_demo", stdout=io.StringIO())
        client = Client()
        for _ in range(WARMUP_REQUESTS):
            response = client.get("/")
        # A benchmark of an error page or an empty site would measure the wrong thing.
        if response.status_code != 200 or b"A Gentle Introduction to Python" not in response.content:
            raise SystemExit(f"bench_landing: GET / answered {response.status_code} without the demo course")

        started = time.perf_counter()
        durations = [timed(lambda: client.get("/")) for _ in range(MEASURED_REQUESTS)]
        total = time.perf_counter() - started

        with CaptureQueriesContext(connection) as queries:
            client.get("/")

    print_results(
        "landing page (GET /, full Django stack, demo course)",
        [
            ("requests", str(MEASURED_REQUESTS), f"(after {WARMUP_REQUESTS} to warm up)"),
            ("total", f"{total:.2f}", "s"),
            ("throughput", f"{MEASURED_REQUESTS / total:.1f}", "requests/s"),
            ("mean", milliseconds(statistics.mean(durations)), "ms per request"),
            ("p95", milliseconds(percentile(durations, 95)), "ms per request"),
            ("SQL queries", str(len(queries)), "per request"),
        ],
    )


if __name__ == "__main__":
    main()
