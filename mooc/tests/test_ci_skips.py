"""With CI=true a skipped test fails the run; elsewhere a skip is only reported."""

from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]

TESTS = """
import pytest

def test_runs():
    assert True

@pytest.mark.skip(reason="needs Redis")
def test_skipped():
    pass
"""


@pytest.fixture
def inner_suite(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_DIR))
    pytester.makepyfile(TESTS)

    def run(**environment):
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return pytester.runpytest_subprocess("-p", "mooc.testing.pytest_plugin", "-p", "no:django", "-p", "no:cacheprovider")

    return run


def test_in_ci_a_skip_fails_the_run_and_is_named(inner_suite):
    result = inner_suite(CI="true")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*CI=true: skipped tests fail the run*", "skipped: test_in_ci_a_skip_fails_the_run_and_is_named.py::test_skipped"])


def test_outside_ci_a_skip_is_reported_and_the_run_passes(inner_suite, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = inner_suite()

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=1)


def test_in_ci_an_expected_failure_is_not_a_skip(inner_suite, pytester):
    pytester.makepyfile(
        TESTS.replace('@pytest.mark.skip(reason="needs Redis")', '@pytest.mark.xfail(reason="known bug")').replace(
            "pass", "assert False"
        )
    )
    result = inner_suite(CI="true")

    assert result.ret == pytest.ExitCode.OK
