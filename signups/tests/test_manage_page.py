"""The learner's own page (/me/<token>/) tells the truth: where their round stands, their group, what comes next."""

import datetime
import html
import re

import pytest

from cohorts.models import Cohort, StudyGroup
from cohorts.selectors import cohort_next_weekly_email
from cohorts.tests.factories import CohortFactory, CourseFactory
from signups.groups import cohort_groups_form, cohorts_groups_form_due
from signups.models import Enrollment
from signups.selectors import enrollment_current, enrollment_overview, learner_today
from signups.services import learner_links
from signups.tests.factories import EnrollmentFactory, LearnerFactory

pytestmark = [pytest.mark.django_db, pytest.mark.clock("2026-11-24T12:00:00Z")]  # a Tuesday

TODAY = datetime.date(2026, 11, 24)
WEEK_3_START = datetime.date(2026, 11, 9)  # a round that started on this Monday is in its week 3 today
NEXT_MONDAY = datetime.date(2026, 11, 30)


@pytest.fixture
def course():
    return CourseFactory(title="A Gentle Introduction to Python", week_count=8)


def round_of(course, name: str, start: datetime.date, **fields) -> Cohort:
    return CohortFactory(course=course, name=name, start_date=start, signup_opens_on=start - datetime.timedelta(weeks=4),
                         signup_closes_on=start + datetime.timedelta(days=6), **fields)


def learner_in(cohort, first_name: str, timezone_name: str = "Europe/Lisbon", **fields) -> Enrollment:
    return EnrollmentFactory(cohort=cohort, learner__first_name=first_name, learner__timezone=timezone_name, **fields)


def page_of(client, enrollment) -> str:
    response = client.get(learner_links(enrollment.learner)["manage"].removeprefix("http://testserver"))
    assert response.status_code == 200
    return response.content.decode()


def text(page: str, section: str | None = None) -> str:
    """The page's words (or one section's, by id), tags dropped and spaces collapsed."""
    if section:
        page = re.search(rf'<section id="{section}".*?</section>', page, re.S).group(0)
    words = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    return re.sub(r" ([:;,.])", r"\1", words)  # "<strong>Group 1</strong>: ..." reads "Group 1: ..."


def grouped_round(course, pattern: str = "https://forum.example.org/c/{group}") -> tuple[Cohort, Enrollment]:
    """Round 1 in its week 3, with one group: Hedy and four others from around Lisbon and London."""
    cohort = round_of(course, "Round 1", WEEK_3_START, discussion_url_pattern=pattern)
    hedy = learner_in(cohort, "Hedy", "Europe/Lisbon")
    for name, zone in [("Ada", "Europe/London"), ("Grace", "Europe/Lisbon"), ("Alan", "Europe/London"), ("Joan", "Europe/Dublin")]:
        learner_in(cohort, name, zone)
    cohort_groups_form(cohort, now=datetime.datetime(2026, 11, 8, 12, tzinfo=datetime.UTC))
    return cohort, hedy


# --- Before, during and after the round --------------------------------------------------------------


def test_before_the_start_the_page_speaks_of_the_future(client, course):
    cohort = round_of(course, "Round 2", NEXT_MONDAY)
    page = text(page_of(client, learner_in(cohort, "Hedy")))

    assert "Round 2, starts Monday 30 November 2026" in page
    assert ", started" not in page
    assert "Not started yet: 8 weeks from Monday 30 November" in page
    assert "Groups are formed on Sunday 29 November 2026: then we introduce you to yours by email." in page
    assert "What happens next Week 1’s email arrives on Monday 30 November 2026." in page


def test_in_week_3_the_page_shows_the_week_and_the_group_with_its_link(client, course, django_assert_num_queries):
    cohort, hedy = grouped_round(course)
    course.week_count = 10  # the course grew; the running round keeps its 8 weeks
    course.save()
    group = StudyGroup.objects.get(cohort=cohort)

    with django_assert_num_queries(5):  # the learner, their enrollment, their group's members, their weeks' check-ins, rounds to switch to
        page = page_of(client, hedy)

    words = text(page)
    assert "Round 1, started Monday 9 November 2026" in words
    assert "Week 3 of 8" in words
    assert "introduced by email before the round starts" not in words
    group_words = text(page, "group")
    assert "Group 1: you and 4 others, close to your time zone." in group_words
    assert "Ada (Europe/London) Alan (Europe/London) Grace (Europe/Lisbon) Joan (Europe/Dublin)" in group_words
    assert "Hedy" not in group_words  # the others, not the learner themself
    assert f'<a class="button" href="https://forum.example.org/c/{group.slug}">Go to Group 1’s discussion</a>' in page
    assert f'group/{group.slug}/">Go to Group 1’s page</a>' in page  # its page here too
    assert "What happens next Week 4’s email arrives on Monday 30 November 2026." in words


def test_a_group_without_a_discussion_link_has_its_own_page_here(client, course):
    _, hedy = grouped_round(course, pattern="")
    group = StudyGroup.objects.get()

    page = page_of(client, hedy)

    group_words = text(page, "group")
    assert "Group 1: you and 4 others" in group_words
    assert "discussion</a>" not in page
    # groupmail's page, at the address scheduler.selectors.group_page_url gives the emails.
    group_page = learner_links(hedy.learner)["manage"].removeprefix("http://testserver") + f"group/{group.slug}/"
    assert f'<a class="button" href="{group_page}">Go to Group 1’s page</a>' in page
    assert "Its members and its messages are there, how to write to it, and a button to mute its mail" in group_words
    assert client.get(group_page).status_code == 200


def test_the_page_costs_the_same_queries_for_a_big_group(client, course, django_assert_num_queries):
    cohort = round_of(course, "Round 1", WEEK_3_START, group_size_max=20, group_size_target=15)
    hedy = learner_in(cohort, "Hedy")
    EnrollmentFactory.create_batch(14, cohort=cohort)
    cohort_groups_form(cohort, now=datetime.datetime(2026, 11, 8, 12, tzinfo=datetime.UTC))

    with django_assert_num_queries(5):
        page = page_of(client, hedy)

    assert "you and 14 others" in text(page, "group")


def test_a_learner_who_joins_after_formation_and_is_not_placed_yet_is_told_so(client, course, django_assert_num_queries):
    cohort, _ = grouped_round(course)
    late = learner_in(cohort, "Kate")  # the factory writes the row: nothing has placed her yet

    with django_assert_num_queries(5):  # the learner, their enrollment, whether groups exist, their weeks' check-ins, rounds to switch to
        page = page_of(client, late)

    assert "This round’s groups are formed already: you will be placed in one shortly." in text(page, "group")


def test_on_formation_day_before_the_job_has_run_the_groups_are_being_formed(client, course):
    cohort = round_of(course, "Round 2", TODAY + datetime.timedelta(days=1))  # forms today
    hedy = learner_in(cohort, "Hedy")
    assert "This round’s groups are being formed: you will be in one shortly" in text(page_of(client, hedy), "group")

    cohorts_groups_form_due(datetime.datetime(2026, 11, 24, 12, tzinfo=datetime.UTC))

    assert "Group 1: nobody else is in it yet." in text(page_of(client, hedy), "group")


def test_after_the_end_the_round_is_finished(client, course):
    cohort = round_of(course, "Round 0", datetime.date(2026, 8, 3))  # 8 weeks: ended Sunday 27 September
    page = page_of(client, learner_in(cohort, "Hedy", wants_group=False))
    words, weeks = text(page), text(page, "progress")

    assert "Round 0, started Monday 3 August 2026" in words
    assert "Finished on Sunday 27 September 2026, after 8 weeks" in words
    assert "Week " not in words.replace(weeks, "").replace("Week Finished", "")  # no current week; their weeks, as history
    assert weeks.count("No answer") == 8
    assert "You chose to study on your own." in words
    assert "The round is over; the links in your emails stay open." in words


def test_a_learner_paused_in_a_round_that_is_over_is_not_asked_to_resume(client, course):
    cohort = round_of(course, "Round 0", datetime.date(2026, 8, 3))
    words = text(page_of(client, learner_in(cohort, "Hedy", status=Enrollment.Status.PAUSED)))

    assert "The round is over; the links in your emails stay open." in words
    assert "until you resume" not in words and "You had no group in this round, which is over now." in words


def test_in_the_last_week_after_its_email_the_page_says_when_the_round_ends(client, course):
    cohort = round_of(course, "Round 0", datetime.date(2026, 10, 5))  # week 8 began Monday 23 November
    words = text(page_of(client, learner_in(cohort, "Hedy")))

    assert "Week 8 of 8" in words
    assert "Every week’s email has come: the round ends on Sunday 29 November 2026." in words


# --- Waitlisted, paused, not confirmed ------------------------------------------------------------------


def test_a_waitlisted_learner_hears_when_a_round_opens_and_can_join_one_open_now(client, course):
    waiting = EnrollmentFactory(cohort=None, course=course, learner__first_name="Hedy")
    words = text(page_of(client, waiting))

    assert "On the waitlist for the next round" in words
    assert "Week " not in words
    assert "You get a study group in the round you join." in words
    assert "What happens next We will email you when the next round opens." in words
    assert "Join a round" not in words

    round_of(course, "Round 2", NEXT_MONDAY)
    words = text(page_of(client, waiting))

    assert "One is open now: you can join it below." in words
    assert "Join a round open now" in words and "Rounds open for signup Round 2: starts Monday 30 November 2026" in words


def test_a_paused_learner_keeps_their_group_and_is_told_nothing_comes_until_they_resume(client, course):
    _, hedy = grouped_round(course)
    Enrollment.objects.filter(pk=hedy.pk).update(status=Enrollment.Status.PAUSED)

    words = text(page_of(client, hedy))

    assert "Week 3 of 8" in words and "Emails paused" in words
    assert "Group 1: you and 4 others" in words
    assert "Your emails are paused: we send you nothing until you resume them below. You keep your place in Group 1." in words
    assert "email arrives" not in words


def test_a_learner_yet_to_confirm_is_asked_to(client, course):
    cohort = round_of(course, "Round 2", NEXT_MONDAY)
    pending = learner_in(cohort, "Hedy", status=Enrollment.Status.PENDING, learner__confirmed_at=None)

    words = text(page_of(client, pending))

    assert "Round 2, starts Monday 30 November 2026" in words
    assert "Once you confirm your address, you get a study group" in words
    assert "Confirm your address with the link we emailed you" in words


# --- The learner's own calendar -------------------------------------------------------------------------


@pytest.mark.clock("2026-11-29T20:00:00Z")  # Sunday evening in Lisbon; already Monday 05:00 in Tokyo
def test_the_round_starts_by_the_learners_own_date(client, course):
    cohort = round_of(course, "Round 2", NEXT_MONDAY)

    in_tokyo = text(page_of(client, learner_in(cohort, "Kenji", "Asia/Tokyo", wants_group=False)))
    in_lisbon = text(page_of(client, learner_in(cohort, "Hedy", "Europe/Lisbon", wants_group=False)))

    assert "Round 2, started Monday 30 November 2026" in in_tokyo and "Week 1 of 8" in in_tokyo
    assert "Week 1’s email is due today." in in_tokyo
    assert "Round 2, starts Monday 30 November 2026" in in_lisbon
    assert "Week 1’s email arrives on Monday 30 November 2026." in in_lisbon


# --- The selector itself ---------------------------------------------------------------------------------


def test_the_next_weekly_email_falls_on_the_rounds_send_weekday(course):
    cohort = round_of(course, "Round 1", WEEK_3_START, send_weekday=2)  # Wednesdays

    assert cohort_next_weekly_email(cohort, TODAY) == (3, datetime.date(2026, 11, 25))
    assert cohort_next_weekly_email(cohort, datetime.date(2026, 11, 25)) == (3, datetime.date(2026, 11, 25))
    assert cohort_next_weekly_email(cohort, datetime.date(2026, 11, 26)) == (4, datetime.date(2026, 12, 2))
    assert cohort_next_weekly_email(cohort, datetime.date(2026, 12, 31)) is None  # week 8's was Wednesday 30 December


def test_a_group_merged_away_is_not_shown_as_the_learners(course, clock):
    cohort, hedy = grouped_round(course)
    StudyGroup.objects.filter(cohort=cohort).update(dissolved_at=clock.now())

    overview = enrollment_overview(enrollment_current(hedy.learner), TODAY)

    assert overview.group is None and overview.group_state == "placing"
    assert (overview.stage, overview.week_number, overview.week_count) == ("running", 3, 8)


def test_an_unknown_time_zone_reads_the_date_in_utc(clock):
    learner = LearnerFactory.build(timezone="Mars/Olympus_Mons")
    assert learner_today(learner, datetime.datetime(2026, 11, 24, 23, 30, tzinfo=datetime.UTC)) == TODAY
