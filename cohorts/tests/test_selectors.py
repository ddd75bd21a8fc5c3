import datetime

import pytest

from cohorts.selectors import cohorts_open_for_signup, course_featured
from cohorts.tests.factories import CohortFactory, CourseFactory, WeekFactory

TODAY = datetime.date(2026, 11, 21)

# Cohorts here have fixed dates around TODAY; the clock (factories' defaults) starts on it too.
pytestmark = [pytest.mark.django_db, pytest.mark.clock(datetime.datetime.combine(TODAY, datetime.time(12), tzinfo=datetime.UTC))]


def test_signup_is_open_from_its_first_to_its_last_day_inclusive():
    cohort = CohortFactory(signup_opens_on=TODAY, signup_closes_on=TODAY + datetime.timedelta(days=3))

    assert list(cohorts_open_for_signup(TODAY - datetime.timedelta(days=1))) == []
    assert list(cohorts_open_for_signup(TODAY)) == [cohort]
    assert list(cohorts_open_for_signup(TODAY + datetime.timedelta(days=3))) == [cohort]
    assert list(cohorts_open_for_signup(TODAY + datetime.timedelta(days=4))) == []


def test_open_cohorts_come_soonest_start_first_and_can_be_limited_to_a_course():
    later = CohortFactory(start_date=datetime.date(2026, 12, 14))
    sooner = CohortFactory(start_date=datetime.date(2026, 11, 30))
    CohortFactory(start_date=datetime.date(2026, 11, 2))  # signup closed on 8 November

    assert list(cohorts_open_for_signup(TODAY)) == [sooner, later]
    assert list(cohorts_open_for_signup(TODAY, course=later.course)) == [later]


def test_the_featured_course_is_the_one_of_the_next_open_cohort():
    CourseFactory(title="Older course without an open round")
    cohort = CohortFactory(start_date=datetime.date(2026, 11, 30))
    WeekFactory(course=cohort.course, number=2)
    WeekFactory(course=cohort.course, number=1)

    course = course_featured(TODAY)

    assert course == cohort.course
    assert [week.number for week in course.weeks.all()] == [1, 2]


def test_without_an_open_cohort_the_first_course_is_featured_and_without_courses_none():
    assert course_featured(TODAY) is None
    first = CourseFactory()
    CourseFactory()
    assert course_featured(TODAY) == first


def test_the_week_a_cohort_is_in():
    from cohorts.selectors import cohort_week_number

    cohort = CohortFactory(start_date=datetime.date(2026, 11, 2))  # an 8-week course
    assert cohort_week_number(cohort, datetime.date(2026, 11, 1)) is None
    assert cohort_week_number(cohort, datetime.date(2026, 11, 2)) == 1
    assert cohort_week_number(cohort, datetime.date(2026, 11, 8)) == 1
    assert cohort_week_number(cohort, datetime.date(2026, 11, 9)) == 2
    assert cohort_week_number(cohort, datetime.date(2026, 12, 27)) == 8
    assert cohort_week_number(cohort, datetime.date(2026, 12, 28)) is None
