"""Weekly check-ins (signups/checkins.py): the links of a week's email, the page they open, the
answer window, and what each answer offers next. Telling the group through group mail is tested
with group mail itself (groupmail/tests/test_checkin_tell.py); the browser test opens a weekly
email from the outbox (test_checkin_browser.py)."""

import datetime
import re

import pytest
from django.test import Client
from django.urls import reverse

from cohorts.models import Cohort, StudyGroup
from signups import checkins
from signups.checkins import checkin_links, checkin_window, week_email_due
from signups.models import CheckIn, Enrollment
from signups.services import learner_erase, learner_links
from signups.tests.factories import EnrollmentFactory
from signups.tokens import checkin_token

START = datetime.date(2026, 11, 30)  # a Monday: each week's email is due Monday 09:00, in the learner's zone
UTC = datetime.UTC


def at(day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(hour, minute), tzinfo=UTC)


IN_WEEK_1 = at(START + datetime.timedelta(days=2), 12)  # Wednesday of week 1, noon UTC
WEEK_2_DUE = at(START + datetime.timedelta(weeks=1), 9)  # Monday 09:00 in Lisbon (UTC+0 in winter)

pytestmark = [pytest.mark.django_db, pytest.mark.clock(IN_WEEK_1)]


@pytest.fixture
def course(db):
    """The demo course (its weeks have titles and discussion links) and its default emails."""
    from cohorts.services import DEMO_COURSE_FILE, course_create_from_definition, course_definition_read

    course, _ = course_create_from_definition(course_definition_read(DEMO_COURSE_FILE))
    return course


@pytest.fixture
def winter(course):
    return Cohort.objects.create(
        course=course, name="Winter round", slug="winter", start_date=START,
        signup_opens_on=START - datetime.timedelta(weeks=4), signup_closes_on=START,
    )


@pytest.fixture
def spring(course):
    """The next round: starts four weeks after winter, open for signup now."""
    start = START + datetime.timedelta(weeks=4)
    return Cohort.objects.create(
        course=course, name="Spring round", slug="spring", start_date=start,
        signup_opens_on=START - datetime.timedelta(weeks=1), signup_closes_on=start,
    )


@pytest.fixture
def ada(winter):
    group = StudyGroup.objects.create(cohort=winter, number=1, name="Group 1", slug="winter-1", utc_offset_minutes=0)
    return EnrollmentFactory(cohort=winter, group=group, learner__first_name="Ada", learner__timezone="Europe/Lisbon")


def link(enrollment, week: int, answer: str) -> str:
    return checkin_links(enrollment.learner.public_id, enrollment.cohort_id, week)[f"checkin_{answer}"].removeprefix("http://testserver")


def answers(enrollment) -> dict[int, str]:
    return dict(CheckIn.objects.filter(learner=enrollment.learner).values_list("week_number", "answer"))


def test_opening_a_link_only_asks_a_scanners_get_or_head_records_nothing(client, ada):
    url = link(ada, 1, "stuck")

    scanned = Client().get(url)  # a mail scanner: no cookie, no session
    assert Client().head(url).status_code == 200

    assert scanned.status_code == 200
    page = scanned.content.decode()
    assert "Week 1: First programs, values and variables" in page and f'<form method="post" action="{url}">' in page
    assert "I&#x27;m stuck</button>" in page
    assert scanned["Cache-Control"].startswith("max-age=0") and "no-store" in scanned["Cache-Control"]
    assert CheckIn.objects.count() == 0


@pytest.mark.parametrize("answer", ["done", "behind", "stuck"])
def test_each_answer_is_recorded_and_can_be_changed_until_the_next_weeks_email(client, ada, clock, answer):
    before = clock.now()
    first = Client().post(link(ada, 1, answer))  # no cookie needed: the signed link is the credential

    assert first.status_code == 200
    assert "Recorded: <strong>“" in first.content.decode()
    checkin = CheckIn.objects.get(learner=ada.learner, cohort=ada.cohort, week_number=1)
    assert checkin.answer == answer and before <= checkin.answered_at == checkin.changed_at <= clock.now()
    answered_at = checkin.answered_at

    clock.move_to(WEEK_2_DUE - datetime.timedelta(minutes=1))  # the last minute of the window
    other = "done" if answer != "done" else "stuck"
    changed = client.post(link(ada, 1, other))

    assert changed.status_code == 200
    checkin.refresh_from_db()
    assert checkin.answer == other and checkin.answered_at == answered_at
    assert WEEK_2_DUE - datetime.timedelta(minutes=1) <= checkin.changed_at < WEEK_2_DUE
    assert CheckIn.objects.count() == 1

    clock.move_to(WEEK_2_DUE)  # week 2's email is due: week 1's answer stands
    closed = client.post(link(ada, 1, answer))

    assert closed.status_code == 409
    page = closed.content.decode()
    assert "Week 1’s check-in has closed" in page and "Nothing was recorded" in page
    assert f"Your answer stays: “{CheckIn.Answer(other).label}”".replace("'", "&#x27;") in page
    assert answers(ada) == {1: other}
    assert client.get(link(ada, 1, answer)).status_code == 200  # the page still opens, and says so
    assert "has closed" in client.get(link(ada, 1, answer)).content.decode()


def test_a_week_whose_email_is_not_due_yet_records_nothing(client, ada):
    refused = client.post(link(ada, 2, "done"))

    assert refused.status_code == 409
    page = refused.content.decode()
    assert "Week 2 has not begun for you yet" in page and "from Monday 7 December, 09:00 (Europe/Lisbon)" in page
    assert answers(ada) == {}


def test_the_window_follows_the_learners_own_time_zone(client, winter, clock):
    """Monday 09:00 comes 13 hours sooner in Auckland than in Lisbon: so does week 2's check-in."""
    kiri = EnrollmentFactory(cohort=winter, learner__timezone="Pacific/Auckland")
    lisbon = EnrollmentFactory(cohort=winter, learner__timezone="Europe/Lisbon")
    clock.move_to(at(START + datetime.timedelta(days=6), 21))  # Sunday 21:00 UTC: Monday 10:00 in Auckland

    assert client.post(link(kiri, 2, "done")).status_code == 200
    assert client.post(link(lisbon, 2, "done")).status_code == 409
    assert answers(kiri) == {2: "done"} and answers(lisbon) == {}


def test_a_long_finished_round_records_nothing_its_last_week_stays_open_a_week(client, ada, clock):
    last_due = at(START + datetime.timedelta(weeks=7), 9)  # week 8's email, Monday 09:00
    clock.move_to(last_due + datetime.timedelta(days=6, hours=23))
    assert client.post(link(ada, 8, "done")).status_code == 200

    clock.move_to(last_due + datetime.timedelta(weeks=1))
    assert client.post(link(ada, 8, "behind")).status_code == 409
    clock.move_to(last_due + datetime.timedelta(weeks=30))
    refused = client.post(link(ada, 3, "stuck"))

    assert refused.status_code == 409 and "check-in has closed" in refused.content.decode()
    assert answers(ada) == {8: "done"}


@pytest.mark.parametrize("problem", ["forged", "cut short", "another learner's signature", "a week the round has not",
                                     "a round that is gone", "erased"])
def test_a_forged_or_dead_link_gets_the_bad_link_page_never_a_500(client, ada, winter, problem):
    token = checkin_token(ada.learner.public_id, winter.pk, 1)
    match problem:
        case "forged":
            token = checkin_token(ada.learner.public_id, winter.pk, 1).rsplit(":", 1)[0] + ":AAAAAAAAAAAAAAAAAAAAAAAAAAA"
        case "cut short":
            token = token[:-5]
        case "another learner's signature":
            other = EnrollmentFactory(cohort=winter).learner
            token = f"{ada.learner.public_id}.{winter.pk}.1:" + checkin_token(other.public_id, winter.pk, 1).rsplit(":", 1)[1]
        case "a week the round has not":
            token = checkin_token(ada.learner.public_id, winter.pk, 9)
        case "a round that is gone":
            token = checkin_token(ada.learner.public_id, winter.pk + 1000, 1)
        case "erased":
            learner_erase(ada.learner, today=START)

    for answer in ("done", "behind", "stuck"):
        for response in (client.get(f"/checkin/{token}/{answer}/"), client.post(f"/checkin/{token}/{answer}/"),
                         client.post(f"/checkin/{token}/tell-group/")):
            assert response.status_code == 400
            assert "This link does not work" in response.content.decode()
    assert CheckIn.objects.count() == 0


def test_an_answer_the_page_does_not_know_is_not_found(client, ada):
    assert client.post(link(ada, 1, "done").replace("/done/", "/bored/")).status_code == 404


def test_a_learner_who_dropped_back_cannot_check_in_for_their_old_round(client, ada, spring, clock):
    from signups.services import enrollment_switch_cohort

    enrollment_switch_cohort(ada, spring, today=clock.today(), now=clock.now())

    refused = client.post(link(ada, 1, "done"))

    assert refused.status_code == 409 and "You are not in Winter round any more" in refused.content.decode()
    assert answers(ada) == {}


def test_behind_offers_to_drop_back_to_the_next_round_in_one_click_or_to_carry_on(client, ada, spring):
    page = client.post(link(ada, 1, "behind")).content.decode()

    assert "Behind is fine" in page
    manage = learner_links(ada.learner)["manage"].removeprefix("http://testserver")
    assert f'action="{manage}switch/"' in page and 'name="cohort" value="spring"' in page
    assert "Drop back to Spring round</button>" in page
    assert f'href="{manage}">Carry on in Winter round</a>' in page

    switched = client.post(f"{manage}switch/", {"cohort": "spring"}, follow=True)  # the button: the self-service page's own switch

    assert "Done: you are now in Spring round" in switched.content.decode()
    ada.refresh_from_db()
    assert ada.status == Enrollment.Status.SWITCHED
    assert Enrollment.objects.get(learner=ada.learner, status=Enrollment.Status.ACTIVE).cohort == spring
    assert answers(ada) == {1: "behind"}  # their answer for the old round stays, as history


def test_behind_with_no_later_round_open_says_so(client, ada):
    page = client.post(link(ada, 1, "behind")).content.decode()
    assert "No later round is open for signup yet" in page and "Drop back to" not in page


def test_stuck_without_group_mail_says_where_to_ask_and_tells_nobody(client, ada, settings):
    settings.GROUP_MAIL_DOMAIN = ""
    ada.group.discussion_url = "https://forum.example.org/c/winter-1"
    ada.group.save()

    page = client.post(link(ada, 1, "stuck")).content.decode()

    assert "Getting unstuck" in page
    assert '<a href="https://forum.example.org/c/winter-1">Group 1’s discussion</a>' in page
    assert f'{learner_links(ada.learner)["manage"].removeprefix("http://testserver")}group/winter-1/">Group 1’s page</a>' in page
    assert "Tell my group" not in page

    token = link(ada, 1, "stuck").split("/")[2]
    refused = client.post(reverse("signups:checkin-tell-group", args=[token]))

    assert refused.status_code == 409 and "Nothing was sent" in refused.content.decode()
    assert CheckIn.objects.get().group_told_at is None


def test_the_week_discussion_link_is_offered_to_the_stuck(client, ada, course):
    week = course.weeks.get(number=1)
    # The demo's weeks have none since OpenStudy closed; a course may still give one.
    week.discussion_title, week.discussion_url = "The course forum", "https://forum.example.org/week-1"
    week.save()

    page = client.post(link(ada, 1, "stuck")).content.decode()

    assert week.discussion_url and f'<a href="{week.discussion_url}">{week.discussion_title}</a>' in page


def test_recording_an_answer_costs_two_queries(client, ada, clock, django_assert_num_queries):
    token = link(ada, 1, "done").split("/")[2]
    checkins.checkin_record(token, "done", clock.now())
    with django_assert_num_queries(2):  # the enrollment with learner, round, group, course week and answer so far; the upsert
        checkins.checkin_record(token, "stuck", clock.now())
    with django_assert_num_queries(2):  # the page itself costs nothing more ("behind": one more, the next round)
        client.post(link(ada, 1, "done"))


def test_the_window_opens_when_the_scheduler_sends_the_weeks_email(winter):
    """The scheduler reckons the same moments (scheduler/due.py), across daylight-saving changes too."""
    from scheduler.due import cohort_week_due

    winter.start_date = datetime.date(2027, 3, 8)  # week 3 crosses the US change, week 4 Europe's
    for zone in ("Europe/Lisbon", "America/New_York", "Pacific/Auckland", "Asia/Kolkata", "UTC"):
        for week in range(1, 9):
            assert week_email_due(winter, week, zone) == cohort_week_due(winter, week, zone)
            assert checkin_window(winter, week, zone)[1] == cohort_week_due(winter, week + 1, zone)


@pytest.mark.clock(at(START + datetime.timedelta(weeks=2, days=1), 12))  # Tuesday of week 3
def test_the_learners_page_shows_their_weeks_with_their_check_ins(client, ada, clock):
    clock.move_to(at(START, 12))
    client.post(link(ada, 1, "done"))
    clock.move_to(at(START + datetime.timedelta(weeks=2, days=1), 12))
    client.post(link(ada, 3, "stuck"))

    page = client.get(learner_links(ada.learner)["manage"].removeprefix("http://testserver")).content.decode()

    section = re.search(r'<section id="progress".*?</section>', page, re.DOTALL).group(0)
    rows = [re.sub(r"<[^>]+>|\s+", " ", row).split() for row in re.findall(r"<tr>\s*<td>.*?</tr>", section, re.DOTALL)]
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert "did this week" in " ".join(rows[0]) and "No answer" in " ".join(rows[1]) and "stuck" in " ".join(rows[2])


def test_the_page_shows_no_weeks_before_the_round_starts(client, ada, clock):
    clock.move_to(at(START - datetime.timedelta(days=3), 12))
    page = client.get(learner_links(ada.learner)["manage"].removeprefix("http://testserver")).content.decode()
    assert 'id="progress"' not in page


def test_group_mail_registers_how_to_tell_a_group():
    from groupmail.services import group_message_on_behalf

    assert checkins.GROUP_TELLERS == [group_message_on_behalf]  # groupmail/apps.py, once
