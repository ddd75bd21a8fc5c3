"""Concurrency tests' helpers: callables run in threads of their own, and a wait until another
database session is blocked on a lock (PostgreSQL), so a race is staged in a known order."""

import threading
import time

from django.db import connection


def in_threads(*targets, timeout=30) -> list[Exception]:
    """Run each callable in a thread of its own (each with its own connection); the errors they raised."""
    errors = []

    def run(target):
        try:
            target()
        except Exception as error:  # noqa: BLE001 - returned to the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (a deadlock?)"
    return errors


def lock_waiter_wait(timeout: float = 10) -> None:
    """Return once another session of this database waits for a lock (PostgreSQL's pg_stat_activity).

    Called by the session holding the lock, before it commits: the other session's statement is
    then known to have reached the lock, not merely to have been started.
    """
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # Inside a transaction PostgreSQL answers from the first look's snapshot of the
            # sessions until told to take a new one.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError(f"no other session waited for a lock within {timeout} s")
