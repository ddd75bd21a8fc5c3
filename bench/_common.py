"""What every benchmark shares: Django on a throwaway database, timing, and printing results.

Not a benchmark itself: the leading underscore keeps it out of `make bench`.
"""

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
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

