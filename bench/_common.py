"""What every benchmark shares: Django on a throwaway database, timing, and printing results.

Not a benchmark itself: the leading underscore keeps it out of `make bench`.
"""

import contextlib
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


POSTGRES_SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL server for benchmarks cannot be used, or None when it can."""
    import psycopg

    try:
        psycopg.connect(f"{POSTGRES_SERVER_URL}/postgres", connect_timeout=3).close()
    except psycopg.Error as error:
        return f"no PostgreSQL at {POSTGRES_SERVER_URL} ({str(error).strip().splitlines()[0]})"
    return None


@contextlib.contextmanager
def _throwaway_postgres_database(name: str) -> Iterator[str]:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER_URL}/postgres", autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}"')
        server.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_SERVER_URL}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES_SERVER_URL}/postgres", autocommit=True) as server:
            server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def django_on_throwaway_database(database: str = "sqlite", name: str | None = None) -> Iterator[Path]:
    """Set up Django on a new, migrated database; yield a temporary folder for the run.

    `database` is "sqlite" (a file in the folder) or "postgresql" (a database created on
    BENCH_POSTGRES_URL's server, dropped at the end; `name` names it, else mooc_bench_<pid>). Call it before anything imports
    Django's settings: the environment is assigned here, overriding a developer's shell and
    `.env`, so every run measures the same production-like setup (DEBUG off).
    CELERY_BROKER_URL keeps its default. The folder is removed on exit.
    """
    folder = Path(tempfile.mkdtemp(prefix="mooc-bench-"))
    try:
        with contextlib.ExitStack() as cleanup:
            if database == "postgresql":
                os.environ["DATABASE_URL"] = cleanup.enter_context(_throwaway_postgres_database(name or f"mooc_bench_{os.getpid()}"))
            else:
                os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'bench.sqlite3'}"
            os.environ["DJANGO_READ_DOT_ENV"] = "false"
            os.environ["DEBUG"] = "false"
            os.environ["SECRET_KEY"] = "bench-only-secret-key-never-used-outside-the-benchmarks-0123456789"
            os.environ["SITE_URL"] = "http://bench.invalid"
            os.environ["ALLOW_HTTP_SITE_URL"] = "true"
            os.environ.setdefault("ALLOW_LOCAL_CACHE", "true")  # a bench that needs Redis sets REDIS_URL
            os.environ["STATIC_MANIFEST"] = "false"
            os.environ["ALLOWED_HOSTS"] = "testserver"
            os.environ["DJANGO_SETTINGS_MODULE"] = "mooc.settings"
            sys.path.insert(0, str(PROJECT_DIR))
            # Static files are served from the app folders, as in the tests; only production runs collectstatic.
            warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

            import django
            from django.core.management import call_command
            from django.db import connections

            django.setup()
            call_command("migrate", verbosity=0)
            try:
                yield folder
            finally:
                connections.close_all()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def timed(action: Callable[[], object]) -> float:
    """Seconds `action()` took."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def percentile(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100)[percent - 1]


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def print_results(title: str, rows: list[tuple[str, str, str]]) -> None:
    """Print the title, then one aligned `name: value unit` line per row, then a blank line."""
    print(title)
    name_width = max(len(name) for name, _, _ in rows) + 1
    value_width = max(len(value) for _, value, _ in rows)
    for name, value, unit in rows:
        print(f"  {name + ':':<{name_width}} {value:>{value_width}} {unit}".rstrip())
    print()


def run_on_each_database(script: str, title: str, measure: Callable[[str], None]) -> None:
    """A benchmark's main(): `script <database>` measures in this process; without an argument,
    SQLite and then PostgreSQL (when BENCH_POSTGRES_URL's server answers), each in a process of
    its own (Django reads its database once per process)."""
    import subprocess

    if len(sys.argv) == 2:
        measure(sys.argv[1])
        return
    for database in ("sqlite", "postgresql"):
        if database == "postgresql" and (reason := postgres_unavailable()):
            print(f"{title} on postgresql: skipped, {reason}\n")
            continue
        subprocess.run([sys.executable, script, database], check=True)



def posts_send(
    port: int, shares: list[list[tuple[str, bytes]]], headers: dict[str, str], accepted: Callable[[int, bytes], bool],
) -> tuple[list[float], list[int], float, float]:
    """POST each share's (path, body) pairs in order from a thread of its own, each thread with
    its own keep-alive connection to 127.0.0.1:`port` (the benchmarks' clients, sharing the
    machine with the server as a load balancer would not). Returns the latencies, the statuses of
    the answers `accepted` refused, the moment the first POST left and the moment the last
    answer came."""

    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(len(shares) + 1)

    def client(share: list[tuple[str, bytes]]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, bad = [], []
        start.wait()
        for path, body in share:
            began = time.perf_counter()
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            mine.append(time.perf_counter() - began)
            if not accepted(response.status, answer):
                bad.append(response.status)
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.close()
        with lock:
            latencies.extend(mine)
            failures.extend(bad)

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    start.wait()
    first = time.perf_counter()
    for thread in threads:
        thread.join()
    return latencies, failures, first, time.perf_counter()


# --- Benchmarks through a real web server and real workers ---------------------------------------

# How the web benchmarks run gunicorn: the README's production line. gthread keeps the clients'
# connections alive; sync (one request per process at a time, the connection closed after each)
# spends less CPU per request.
GUNICORN_WORKERS = int(os.environ.get("BENCH_HOOKS_GUNICORN_WORKERS", "3"))
GUNICORN_THREADS = int(os.environ.get("BENCH_HOOKS_GUNICORN_THREADS", "4"))
GUNICORN_WORKER_CLASS = os.environ.get("BENCH_HOOKS_GUNICORN_WORKER_CLASS", "gthread")


def redis_unavailable(*urls: str) -> str | None:
    """Why one of these Redis servers cannot be used, or None when all answer."""
    import redis

    for url in urls:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except redis.RedisError as error:
            return f"no Redis at {url} ({error})"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children still running (gunicorn's workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


class Gunicorn:
    """`gunicorn mooc.wsgi` on 127.0.0.1:`port`, configured as GUNICORN_*; `name` names the benchmark in its messages."""

    def __init__(self, port: int, name: str):
        self.port, self.name = port, name
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "mooc.wsgi:application", "--bind", f"127.0.0.1:{port}",
                "--workers", str(GUNICORN_WORKERS), "--worker-class", GUNICORN_WORKER_CLASS, "--threads", str(GUNICORN_THREADS),
                "--keep-alive", "30", "--log-level", "warning",
            ],
            cwd=PROJECT_DIR, env=os.environ | {"PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name}: gunicorn stopped:\n" + "\n".join(self.lines[-20:]))
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/healthz")
                connection.getresponse().read()
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"{self.name}: gunicorn did not answer in {timeout:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def latency_rows(latencies: list[float]) -> list[tuple[str, str, str]]:
    """The client-side latency rows every web benchmark prints."""
    return [
        ("latency p50", milliseconds(percentile(latencies, 50)), "ms per request (client side)"),
        ("latency p95", milliseconds(percentile(latencies, 95)), "ms"),
        ("latency p99", milliseconds(percentile(latencies, 99)), "ms"),
    ]


def median_of_five(action: Callable[[], object]) -> tuple[str, str]:
    """Run `action` five times, then once more counting its queries: the median and the count, as
    print_results shows them. BENCH_SHOW_QUERIES prints the slowest statements of that run, and
    BENCH_EXPLAIN their PostgreSQL plans too. Call it with Django set up."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    seconds = []
    for _ in range(5):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    with CaptureQueriesContext(connection) as queries:
        action()
    if os.environ.get("BENCH_SHOW_QUERIES") or os.environ.get("BENCH_EXPLAIN"):
        for statement in sorted(queries.captured_queries, key=lambda query: -float(query["time"]))[:4]:
            print(f"    {statement['time']} s  {statement['sql'][:200]}")
            if os.environ.get("BENCH_EXPLAIN") and statement["sql"].startswith("SELECT"):
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN ANALYZE " + statement["sql"])
                    print("      " + "\n      ".join(row[0] for row in cursor.fetchall()))
    return f"{statistics.median(seconds) * 1000:.0f}", f"ms median of 5 (slowest {max(seconds) * 1000:.0f} ms), {len(queries)} queries"


def page_fetch(client, url: str) -> Callable[[], None]:
    """An action for median_of_five: GET `url` with the test client, answered 200, read to the end."""

    def get():
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        if response.streaming:
            b"".join(response.streaming_content)

    return get
