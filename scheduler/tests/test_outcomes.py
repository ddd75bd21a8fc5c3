"""The outcome report against a round built by hand: each figure, its Wilson interval, what the
test concludes, the pooled course report, the pages, who may see them, the CSV, the queries."""

import csv
import datetime
import io

import pytest
from django.urls import reverse

from cohorts.models import GroupStrategy, StudyGroup
from cohorts.tests.factories import CohortFactory, CourseFactory
from mooc.permissions import COURSE_EDITOR, ORGANIZER, VIEWER
from mooc.tests.test_staff_roles import log_in
from scheduler.models import Delivery, EmailKind
from scheduler.outcomes import cohort_outcomes, course_outcomes
from signups.models import CheckIn, Enrollment
from signups.tests.factories import EnrollmentFactory

UTC = datetime.UTC
START = datetime.date(2026, 11, 30)  # a Monday; 5 weeks: week 5 begins 28 Dec
NOW = datetime.datetime(2027, 1, 1, 12, tzinfo=UTC)  # in week 5: weeks 2, 4 and 5 (the last) have begun
TODAY = NOW.date()

pytestmark = [pytest.mark.django_db, pytest.mark.clock(NOW)]


def check_in(enrollment, week, answer=CheckIn.Answer.DONE):
    moment = datetime.datetime.combine(START + datetime.timedelta(weeks=week - 1, days=2), datetime.time(18), tzinfo=UTC)
    CheckIn.objects.create(learner=enrollment.learner, cohort=enrollment.cohort, week_number=week, answer=answer, answered_at=moment, changed_at=moment)


def opened(enrollment, week):
    moment = datetime.datetime.combine(START + datetime.timedelta(weeks=week - 1), datetime.time(9), tzinfo=UTC)
    Delivery.objects.create(
        learner=enrollment.learner, cohort=enrollment.cohort, kind=EmailKind.WEEK, week_number=week, status=Delivery.Status.SENT,
        due_at=moment, sent_at=moment, delivered_at=moment, opened_at=moment + datetime.timedelta(hours=2),
    )


def groups_of(cohort, strategy, *numbers):
    return [
        StudyGroup.objects.create(cohort=cohort, number=n, name=f"Group {n}", slug=f"{cohort.slug}-{n}", utc_offset_minutes=0, strategy=strategy)
        for n in numbers
    ]


@pytest.fixture
def round_(db):
    course = CourseFactory(week_count=5, slug="python")
    return CohortFactory(course=course, name="Winter round", slug="winter", start_date=START, group_strategy=GroupStrategy.EXPERIMENT,
                         experiment_strategies=[GroupStrategy.TIMEZONE, GroupStrategy.RANDOM], experiment_seed=7,
                         signup_opens_on=START - datetime.timedelta(weeks=4), signup_closes_on=START)


@pytest.fixture
def learners(round_):
    """An experiment: 20 learners grouped by time zone, 20 at random, 2 who want no group.

    Active (checked in, or opened the week's email), worked out by hand:
      time zone  week 2: 15 of 20 (10 checked in, 9 opened, 4 of them both)   week 4: 12   week 5: 6
      random     week 2:  7 of 20 (checked in: done, behind or stuck)          week 4:  9   week 5: 4
      no group   week 2:  1 of 2
    """
    zone_groups = groups_of(round_, GroupStrategy.TIMEZONE, 1, 2)
    random_groups = groups_of(round_, GroupStrategy.RANDOM, 3, 4)
    zone = [EnrollmentFactory(cohort=round_, group=zone_groups[n // 10]) for n in range(20)]
    random = [EnrollmentFactory(cohort=round_, group=random_groups[n // 10]) for n in range(20)]
    ungrouped = [EnrollmentFactory(cohort=round_, wants_group=False) for _ in range(2)]
    # Leaving is an outcome: she counts, inactive; an unconfirmed signup does not count at all.
    Enrollment.objects.filter(pk=zone[19].pk).update(status=Enrollment.Status.LEFT, ended_at=NOW - datetime.timedelta(weeks=3))
    pending = EnrollmentFactory(cohort=round_, status=Enrollment.Status.PENDING, learner__confirmed_at=None)
    check_in(pending, 2)
    for n in range(10):
        check_in(zone[n], 2)
    for n in range(6, 15):
        opened(zone[n], 2)
    for n in range(12):
        check_in(zone[n], 4, CheckIn.Answer.BEHIND if n % 3 else CheckIn.Answer.DONE)
    for n in range(6):
        opened(zone[n], 5)
    for n in range(7):
        check_in(random[n], 2, [CheckIn.Answer.DONE, CheckIn.Answer.BEHIND, CheckIn.Answer.STUCK][n % 3])
    for n in range(9):
        opened(random[n], 4)
    for n in range(4):
        check_in(random[n], 5)
    check_in(ungrouped[0], 2)
    opened(random[0], 3)  # week 3 is not reported
    # Another round's learner: not this round's.
    elsewhere = EnrollmentFactory(cohort=CohortFactory(course=round_.course, slug="other", start_date=START))
    check_in(elsewhere, 2)
    return {"zone": zone, "random": random, "ungrouped": ungrouped}


def figures(report):
    return {row.label: {key: (f.active, f.learners) if f else None for key, f in row.figures.items()} for row in report.rows}


def test_each_strategys_share_active_at_weeks_2_4_and_the_last(learners, round_):
    outcomes = cohort_outcomes(round_, TODAY)

    assert outcomes.weeks == {"week_2": 2, "week_4": 4, "last": 5}
    assert [(row.label, row.learners) for row in outcomes.report.rows] == [
        ("Time zone only", 20), ("Random (the 2013 baseline)", 20), ("No group", 2),
    ]
    assert figures(outcomes.report) == {
        "Time zone only": {"week_2": (15, 20), "week_4": (12, 20), "last": (6, 20)},
        "Random (the 2013 baseline)": {"week_2": (7, 20), "week_4": (9, 20), "last": (4, 20)},
        "No group": {"week_2": (1, 2), "week_4": (0, 2), "last": (0, 2)},
    }


def test_each_figure_has_its_wilson_interval(learners, round_):
    zone, random, _ = cohort_outcomes(round_, TODAY).report.rows

    # By hand (test_proportions.py shows the working): 15/20 -> 0.5313 to 0.8881; 7/20 -> 0.1812 to 0.5671.
    assert zone.figures["week_2"].interval == (pytest.approx(0.5313, abs=1e-4), pytest.approx(0.8881, abs=1e-4))
    assert random.figures["week_2"].interval == (pytest.approx(0.1812, abs=1e-4), pytest.approx(0.5671, abs=1e-4))
    assert zone.figures["week_2"].percent == "75.0%" and zone.figures["week_2"].interval_text == "53.1–88.8%"


def test_the_sentences_say_whether_chance_explains_the_difference(learners, round_):
    week_2, week_4, last = cohort_outcomes(round_, TODAY).report.verdicts

    # 15/20 against 7/20: z = 2.5426, p = 0.0110 < 0.05.
    assert week_2.distinguishable is True and week_2.p_value == pytest.approx(0.0110, abs=1e-4)
    assert week_2.sentence == (
        "Week 2: Time zone only 75.0% (15 of 20) and Random (the 2013 baseline) 35.0% (7 of 20); "
        "the difference, 40.0 points, is larger than chance explains at this size (p = 0.011)."
    )
    # 12/20 against 9/20: z = 0.9499, p = 0.342.
    assert week_4.distinguishable is False and week_4.p_value == pytest.approx(0.3422, abs=1e-4)
    assert "not distinguishable from chance at this size (p = 0.342)" in week_4.sentence
    # Only 4 random learners active in week 5: fewer than 5.
    assert last.distinguishable is None and "The sample is too small to tell" in last.sentence


def test_weeks_not_begun_are_not_reported(learners, round_):
    outcomes = cohort_outcomes(round_, START + datetime.timedelta(weeks=1, days=3))  # in week 2

    assert outcomes.weeks == {"week_2": 2, "week_4": None, "last": None}
    assert all(row.figures["week_4"] is None and row.figures["last"] is None for row in outcomes.report.rows)
    assert outcomes.report.verdicts[1].sentence == "Week 4: not reached yet."
    in_week_1 = cohort_outcomes(round_, START + datetime.timedelta(days=2))
    assert [row.learners for row in in_week_1.report.rows] == [20, 20, 2]
    assert all(figure is None for row in in_week_1.report.rows for figure in row.figures.values())


def test_a_round_of_one_strategy_has_nothing_to_compare(round_):
    (group,) = groups_of(round_, GroupStrategy.TIMEZONE_EXPERIENCE, 1)
    for enrollment in EnrollmentFactory.create_batch(3, cohort=round_, group=group):
        check_in(enrollment, 2)

    report = cohort_outcomes(round_, TODAY).report

    assert figures(report) == {"Time zone and experience": {"week_2": (3, 3), "week_4": (0, 3), "last": (0, 3)}}
    assert "only one strategy formed groups here" in report.verdicts[0].sentence


def test_one_query_however_many_learners(learners, round_, django_assert_num_queries):
    with django_assert_num_queries(1):
        cohort_outcomes(round_, TODAY)
    group = StudyGroup.objects.get(slug="winter-1")
    for enrollment in EnrollmentFactory.create_batch(15, cohort=round_, group=group):
        check_in(enrollment, 2)
        opened(enrollment, 4)
    with django_assert_num_queries(1):
        cohort_outcomes(round_, TODAY)


def test_the_course_report_pools_its_rounds(learners, round_, django_assert_num_queries):
    # A finished autumn round, at random: 10 learners, 5 active at week 2, 1 at its last week (5).
    autumn = CohortFactory(course=round_.course, name="Autumn", slug="autumn", start_date=START - datetime.timedelta(weeks=7),
                           signup_opens_on=START - datetime.timedelta(weeks=10), signup_closes_on=START - datetime.timedelta(weeks=7))
    (group,) = groups_of(autumn, GroupStrategy.RANDOM, 1)
    people = EnrollmentFactory.create_batch(10, cohort=autumn, group=group)
    for enrollment in people[:5]:
        check_in(enrollment, 2)
    check_in(people[0], 5)
    with django_assert_num_queries(2):
        outcomes = course_outcomes(round_.course, TODAY)

    assert [round_outcomes.cohort.slug for round_outcomes in outcomes.rounds] == ["autumn", "other", "winter"]
    assert figures(outcomes.pooled)["Random (the 2013 baseline)"] == {"week_2": (12, 30), "week_4": (9, 30), "last": (5, 30)}
    assert figures(outcomes.pooled)["Time zone only"] == {"week_2": (15, 20), "week_4": (12, 20), "last": (6, 20)}
    assert figures(outcomes.rounds[2].report) == figures(cohort_outcomes(round_, TODAY).report)


# --- Pages, links, permissions ---------------------------------------------------------------------


def test_the_page_shows_the_figures_the_sentences_and_the_footnote(learners, round_, admin_client):
    page = admin_client.get(reverse("admin:cohorts_cohort_outcomes", args=[round_.pk])).content.decode()

    assert "<strong>75.0%</strong>" in page and "95%: 53.1–88.8%" in page and "15 of 20" in page
    assert "is larger than chance explains at this size (p = 0.011)" in page
    assert "two-sided two-proportion z-test" in page and "Wilson score interval" in page
    assert reverse("admin:cohorts_cohort_outcomes_csv", args=[round_.pk]) in page


def test_the_page_takes_a_fixed_number_of_queries(learners, round_, admin_client, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("admin:cohorts_cohort_outcomes", args=[round_.pk])
    with CaptureQueriesContext(connection) as before:
        admin_client.get(url)
    for enrollment in EnrollmentFactory.create_batch(10, cohort=round_, group=StudyGroup.objects.get(slug="winter-3")):
        check_in(enrollment, 4)
    with django_assert_max_num_queries(len(before)):
        assert admin_client.get(url).status_code == 200


def test_the_course_page_shows_every_round(learners, round_, admin_client):
    page = admin_client.get(reverse("admin:cohorts_course_outcomes", args=[round_.course_id])).content.decode()

    assert "Every round together" in page and "Winter round" in page
    assert reverse("admin:cohorts_cohort_outcomes", args=[round_.pk]) in page


def test_the_dashboards_and_admin_pages_link_to_the_report(round_, admin_client):
    cohort_report = reverse("admin:cohorts_cohort_outcomes", args=[round_.pk])
    course_report = reverse("admin:cohorts_course_outcomes", args=[round_.course_id])

    assert cohort_report in admin_client.get(reverse("admin:cohorts_cohort_change", args=[round_.pk])).content.decode()
    assert cohort_report in admin_client.get(reverse("admin:cohorts_cohort_dashboard", args=[round_.pk])).content.decode()
    assert course_report in admin_client.get(reverse("admin:cohorts_course_change", args=[round_.course_id])).content.decode()
    assert course_report in admin_client.get(reverse("admin:cohorts_course_dashboard", args=[round_.course_id])).content.decode()


REPORT_URLS = [
    ("admin:cohorts_cohort_outcomes", lambda round_: [round_.pk]),
    ("admin:cohorts_cohort_outcomes_csv", lambda round_: [round_.pk]),
    ("admin:cohorts_course_outcomes", lambda round_: [round_.course_id]),
    ("admin:cohorts_course_outcomes_csv", lambda round_: [round_.course_id]),
]


@pytest.mark.parametrize("url_name, args", REPORT_URLS)
def test_an_organizer_may_see_the_report(round_, url_name, args):
    assert log_in(ORGANIZER).get(reverse(url_name, args=args(round_))).status_code == 200


@pytest.mark.parametrize("role", [COURSE_EDITOR, VIEWER])
@pytest.mark.parametrize("url_name, args", REPORT_URLS)
def test_a_course_editor_or_viewer_gets_403_even_by_the_address(round_, role, url_name, args):
    assert log_in(role).get(reverse(url_name, args=args(round_))).status_code == 403


def test_a_viewer_is_not_shown_the_link(round_):
    viewer = log_in(VIEWER)
    report = reverse("admin:cohorts_cohort_outcomes", args=[round_.pk])

    assert report not in viewer.get(reverse("admin:cohorts_cohort_change", args=[round_.pk])).content.decode()
    assert report not in viewer.get(reverse("admin:cohorts_cohort_dashboard", args=[round_.pk])).content.decode()


# --- CSV -----------------------------------------------------------------------------------------


def download(client, url) -> list[list[str]]:
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_report_as_csv(learners, round_, admin_client):
    rows = download(admin_client, reverse("admin:cohorts_cohort_outcomes_csv", args=[round_.pk]))

    assert rows[0] == ["round", "strategy", "learners", "week", "active", "percent active", "95% interval low", "95% interval high"]
    assert rows[1] == ["Winter round", "Time zone only", "20", "Week 2", "15", "75.0", "53.1", "88.8"]
    assert rows[3] == ["Winter round", "Time zone only", "20", "Last week (week 5)", "6", "30.0", "14.5", "51.9"]
    assert rows[4] == ["Winter round", "Random (the 2013 baseline)", "20", "Week 2", "7", "35.0", "18.1", "56.7"]
    assert len(rows) == 1 + 3 * 3


def test_the_course_csv_has_each_round_then_all_together(learners, round_, admin_client):
    response = admin_client.get(reverse("admin:cohorts_course_outcomes_csv", args=[round_.course_id]))
    assert 'filename="python-outcomes.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))

    other = round_.course.cohorts.get(slug="other").name
    assert [row[0] for row in rows[1:]] == [other] * 3 + ["Winter round"] * 9 + ["All rounds"] * 9
    assert rows[-9] == ["All rounds", "Time zone only", "20", "Week 2", "15", "75.0", "53.1", "88.8"]
