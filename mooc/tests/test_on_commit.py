"""The suite's on_commit rule (mooc/testing/fixtures.py): at the test's own depth a callback runs at
once, as after a commit; inside a block the code under test opened, it waits for a commit that a
test wrapped in a transaction never makes. Tests that commit for real keep Django's behaviour."""

import pytest
from django.db import transaction

from mooc.celery import app


@pytest.mark.django_db
def test_a_callback_outside_the_codes_own_blocks_runs_at_once():
    ran = []
    transaction.on_commit(lambda: ran.append("outside"))
    assert ran == ["outside"]


@pytest.mark.django_db
def test_a_callback_inside_a_block_the_code_opened_never_runs_in_a_wrapped_test():
    ran = []
    with transaction.atomic():
        transaction.on_commit(lambda: ran.append("inside"))
        with transaction.atomic():
            transaction.on_commit(lambda: ran.append("nested"))
    transaction.on_commit(lambda: ran.append("after the block"))
    assert ran == ["after the block"]


@pytest.mark.django_db
def test_a_robust_callback_that_fails_is_logged_and_the_code_goes_on(caplog):
    def broken():
        raise RuntimeError("the broker is down")

    transaction.on_commit(broken, robust=True)
    assert "the broker is down" in caplog.text
    with pytest.raises(RuntimeError):
        transaction.on_commit(broken)


@pytest.mark.django_db(transaction=True)
def test_a_test_that_commits_keeps_djangos_behaviour():
    ran = []
    with transaction.atomic():
        transaction.on_commit(lambda: ran.append("inside"))
        assert ran == []
    assert ran == ["inside"]
    with transaction.atomic():
        transaction.on_commit(lambda: ran.append("rolled back"))
        transaction.set_rollback(True)
    assert ran == ["inside"]


def test_tasks_run_eagerly_in_the_suite():
    assert app.conf.task_always_eager is True and app.conf.task_eager_propagates is True


@pytest.mark.celery_worker
def test_but_not_in_tests_with_real_workers():
    assert app.conf.task_always_eager is False
