"""Fixtures shared by every app's tests: a real browser and a real Celery worker."""

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
    """This process's environment, pointed at the test database, plus `extra`."""
    return os.environ | {"DATABASE_URL": database_url_for_other_processes(), "DJANGO_READ_DOT_ENV": "false"} | extra


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
