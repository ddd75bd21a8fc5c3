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
