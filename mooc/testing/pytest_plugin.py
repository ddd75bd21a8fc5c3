"""How the suite treats tests that need outside services, and CI's rule about skips.

Tests marked `postgres`, `redis` or `celery_worker` skip, with the reason, when the
service they need is not configured or not reachable. When CI=true, a run in which any
test was skipped fails: in CI every service is there, so a skip means a broken set-up.
"""

import os

import pytest

SERVICE_MARKERS = ("postgres", "redis", "celery_worker")


def ci_enforces_no_skips() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing_services(item) -> str | None:
    """Why `item` cannot run here, or None when every service it needs is available."""
    from mooc.testing.services import postgres_unavailable, redis_unavailable

    needs = {marker for marker in SERVICE_MARKERS if item.get_closest_marker(marker)}
    if "celery_worker" in needs:
        needs |= {"postgres", "redis"}
    reasons = []
    if "postgres" in needs and (reason := postgres_unavailable()):
        reasons.append(reason)
    if "redis" in needs and (reason := redis_unavailable()):
        reasons.append(reason)
    return "; ".join(reasons) or None


def pytest_runtest_setup(item):
    reason = missing_services(item)
    if reason:
        pytest.skip(reason)


class SkipCounter:
    """Collects the ids of skipped tests (an expected failure, xfail, is not a skip)."""

    name = "mooc-skip-counter"

    def __init__(self):
        self.skipped: list[str] = []

    def pytest_runtest_logreport(self, report):
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append(report.nodeid)


def pytest_configure(config):
    config.pluginmanager.register(SkipCounter(), SkipCounter.name)


def _skipped(config) -> list[str]:
    return config.pluginmanager.get_plugin(SkipCounter.name).skipped


def pytest_sessionfinish(session, exitstatus):
    if ci_enforces_no_skips() and _skipped(session.config) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    skipped = _skipped(config)
    if ci_enforces_no_skips() and skipped:
        terminalreporter.section("CI=true: skipped tests fail the run", red=True)
        for nodeid in skipped:
            terminalreporter.line(f"skipped: {nodeid}")
