"""Fixtures shared by every app's tests: eager Celery and on_commit, a real browser and a real Celery worker."""

import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mooc.testing.services import database_url_for_other_processes

PROJECT_DIR = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing():
    """Production hashes a password with a million rounds of PBKDF2 (about 0.3 s); tests that log
    staff in through the real login form would spend minutes on it. Hashing is not under test."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(scope="session", autouse=True)
def template_checks_remembered():
    """Hundreds of tests install the course's eleven default email templates, and checking one
    (compiling it and rendering it for the sample learners) takes about a tenth of a second: here a
    text that passed the save check once passes again without a second check. Refusals are never
    remembered, and the tests of the check itself call scheduler.templating.email_check, which is
    left as it is."""
    from scheduler import services

    checked = services.email_check
    passed: set[tuple[str, str]] = set()

    def email_check(subject, body, samples):
        if (subject, body) not in passed:
            checked(subject, body, samples)
            passed.add((subject, body))

    services.email_check = email_check
    yield
    services.email_check = checked


@pytest.fixture(autouse=True)
def celery_tasks_eager_unless_real_workers(request):
    """Tasks run at once, in the test's process (CELERY_TASK_ALWAYS_EAGER in pytest.ini), except in
    tests marked celery_worker: those send them through the broker to the worker processes they
    start, as production does."""
    from mooc.celery import app

    if not request.node.get_closest_marker("celery_worker"):
        yield
        return
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = False
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture(autouse=True)
def on_commit_at_the_tests_own_depth(monkeypatch):
    """In a test wrapped in a transaction (django_db without transaction=True), whatever code
    registers with `transaction.on_commit` outside any atomic block of its own runs at once, as
    it would in production, where that moment is a commit (or autocommit): the test's own
    transaction stands in for it. Registered inside an atomic block the code under test opened,
    it is kept for the outermost commit as Django does, which in such a test never comes. That
    keeps the services' rule honest, queue after your own `transaction.atomic()` block: one that
    queues inside it sends nothing in its tests, and they fail.

    Tests with transaction=True (and the live server) commit for real: Django's own behaviour.
    Django's captureOnCommitCallbacks does not see callbacks run here at once."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    deferred = BaseDatabaseWrapper.on_commit

    def on_commit(connection, func, robust=False):
        blocks = connection.atomic_blocks
        if not (blocks and blocks[-1]._from_testcase):  # not at the test's depth: Django decides
            return deferred(connection, func, robust)
        if not robust:
            return func()
        try:
            func()
        except Exception as error:
            logging.getLogger("django.db.backends.base").error(
                "Error calling %s in on_commit() (%s).", func.__qualname__, error, exc_info=True
            )

    monkeypatch.setattr(BaseDatabaseWrapper, "on_commit", on_commit)


@pytest.fixture(autouse=True)
def empty_cache():
    """Rate-limit counters and the scheduler's remembered states live in the cache: every test
    starts with none, whatever the test before it left."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, driven by Playwright; skips (with the reason) when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs Playwright: `make test` installs it from requirements-browser.txt when it can")
    executable = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not executable:
        pytest.skip("needs Debian's chromium: `make test` installs it with apt-get when it can (scripts/install-chromium)")
    # Playwright's sync API runs an event loop in this thread; the Django calls the tests
    # make between page actions are still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


# The widths pages are looked at in: a phone held upright, and a laptop.
PHONE_WIDTH, DESKTOP_WIDTH = 390, 1280


@pytest.fixture
def page_at(browser):
    """`page_at(width)`: a page in a browser context of its own, `width` pixels wide; phone
    widths get a touch screen and a mobile viewport, as a phone's browser has."""
    contexts = []

    def open_page(width: int, **context_options):
        context = browser.new_context(viewport={"width": width, "height": 900}, is_mobile=width < 600, **context_options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    yield open_page
    for context in contexts:
        context.close()


def fits_width(page) -> bool:
    """Nothing sticks out sideways: the page needs no horizontal scrolling at its viewport's width.

    Compared with the width the context was given, not window.innerWidth: a phone's browser
    zooms out to show whatever sticks out, and innerWidth grows with it.
    """
    return page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


def csp_violations(page) -> list[str]:
    """The Content-Security-Policy violations the page reports from now on (a list that fills
    as they come): Chromium logs every load or inline code the policy refused to the console."""
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    return violations


def environment_for_other_processes(**extra: str) -> dict[str, str]:
    """This process's environment, pointed at the test database, plus `extra`. Their tasks go
    through the broker, as in production (the suite's own process runs them eagerly)."""
    return os.environ | {
        "DATABASE_URL": database_url_for_other_processes(), "DJANGO_READ_DOT_ENV": "false", "CELERY_TASK_ALWAYS_EAGER": "false",
    } | extra


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    # Shown by pytest when the test failed: what the worker said.
    print(output)


@pytest.fixture
def celery_workers(transactional_db):
    """Start real `celery worker` processes on the test database: `start(queue, **env)`.

    Each consumes the queue given (send tasks there with `apply_async(queue=...)`) and
    commits to the database, so tests using them see their writes (transactional_db).
    All are stopped at the end of the test.
    """
    started: list[subprocess.Popen] = []

    def start(queue: str, **extra_env: str) -> subprocess.Popen:
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "mooc", "worker",
                "--queues", queue, "--pool", "solo", "--concurrency", "1",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--hostname", f"{queue}-{len(started)}@%h", "--loglevel", "INFO",
            ],
            cwd=PROJECT_DIR,
            env=environment_for_other_processes(**extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        _stop(worker)


@pytest.fixture
def celery_worker_queue(celery_workers):
    """One real worker consuming a queue of its own; yields the queue's name."""
    queue = f"test-{uuid.uuid4().hex[:12]}"
    celery_workers(queue)
    return queue


def wait_for(condition, timeout: float = 30, interval: float = 0.2):
    """Poll `condition` until it returns something truthy; that value, or None at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(interval)
    return None
