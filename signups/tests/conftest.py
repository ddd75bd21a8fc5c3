import datetime

import pytest

from cohorts.tests.factories import CohortFactory, CourseFactory


@pytest.fixture
def today(clock):
    return clock.today()


@pytest.fixture
def course(db):
    return CourseFactory(title="A Gentle Introduction to Python", slug="gentle-python")


def _cohort(course, name, start, opens, closes):
    return CohortFactory(
        course=course, name=name, slug=name.lower().replace(" ", "-"), start_date=start,
        signup_opens_on=opens, signup_closes_on=closes,
    )


@pytest.fixture
def running_cohort(course, today):
    """Started two weeks ago; signup closed."""
    start = today - datetime.timedelta(weeks=2)
    return _cohort(course, "Round 1", start, start - datetime.timedelta(weeks=4), start + datetime.timedelta(days=6))


@pytest.fixture
def next_cohort(course, today):
    """Starts in ten days; open for signup."""
    start = today + datetime.timedelta(days=10)
    return _cohort(course, "Round 2", start, today - datetime.timedelta(days=7), start + datetime.timedelta(days=6))


@pytest.fixture
def later_cohort(course, today):
    """Starts in five weeks; open for signup."""
    start = today + datetime.timedelta(weeks=5)
    return _cohort(course, "Round 3", start, today - datetime.timedelta(days=1), start + datetime.timedelta(days=6))


class Worker:
    """Stands in for the Celery worker of organizers' jobs (imports, bulk actions): what the code
    queues is recorded, never sent nor run eagerly, and the test runs it when it wants to."""

    TASKS = ("learner_import_preview", "learner_import_apply", "learner_bulk_action_run")

    def __init__(self, monkeypatch):
        from signups import tasks

        self.tasks = tasks
        self.queued: list[tuple[str, int]] = []
        for name in self.TASKS:
            monkeypatch.setattr(
                getattr(tasks, name), "apply_async", lambda args, queue, name=name: self.queued.append((name, args[0]))
            )

    def run(self) -> list[str]:
        """Run everything queued, in order (and what that queues); the names of the tasks run."""
        ran = []
        while self.queued:
            name, job_id = self.queued.pop(0)
            getattr(self.tasks, name).run(job_id)
            ran.append(name)
        return ran


@pytest.fixture
def worker(monkeypatch):
    return Worker(monkeypatch)
