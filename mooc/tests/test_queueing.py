"""mooc/queueing.py: at most one waiting task per mark, whatever the cache and the broker do."""

import pytest
from kombu.exceptions import OperationalError

from mooc import queueing


class Task:
    def __init__(self, fails: Exception | None = None):
        self.queued, self.fails = [], fails

    def apply_async(self, queue, retry_policy):
        if self.fails:
            raise self.fails
        self.queued.append(queue)


def test_a_task_is_queued_once_until_it_starts():
    task = Task()

    assert queueing.task_queue_once("test:mark", 10, task, queue="q", what="Test")
    assert not queueing.task_queue_once("test:mark", 10, task, queue="q", what="Test")
    queueing.task_started("test:mark", "Test")
    assert queueing.task_queue_once("test:mark", 10, task, queue="q", what="Test")

    assert task.queued == ["q", "q"]


def test_without_the_cache_the_task_is_queued_anyway(monkeypatch, caplog):
    def down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(queueing.cache, "add", down)
    monkeypatch.setattr(queueing.cache, "delete", down)
    task = Task()

    assert queueing.task_queue_once("test:mark", 10, task, queue="q", what="Test")
    assert queueing.task_queue_once("test:mark", 10, task, queue="q", what="Test")
    queueing.task_started("test:mark", "Test")  # nothing raised

    assert task.queued == ["q", "q"] and "the cache is unreachable" in caplog.text


@pytest.mark.parametrize("error", [OperationalError("Connection refused"), OSError("No route to host")])
def test_without_the_broker_nothing_raises_and_the_mark_does_not_hold_back_what_comes_next(caplog, error):
    assert not queueing.task_queue_once("test:mark", 10, Task(fails=error), queue="q", what="Test")
    assert "the broker is unreachable" in caplog.text

    back = Task()
    assert queueing.task_queue_once("test:mark", 10, back, queue="q", what="Test")
    assert back.queued == ["q"]
