"""Each group's weekly check-in rate and the quiet rule; re-forming by activity: who is offered
a move out of a quiet group (once), the one-click move (a GET changes nothing), and the next
weekly email that tells the move once."""

import datetime

import pytest
from django.core import mail
from django.urls import reverse

from cohorts.models import GroupStrategy, StudyGroup
from cohorts.tests.factories import CohortFactory, CourseFactory
from scheduler.models import Delivery, EmailKind
from scheduler.selectors import email_contexts
from signups.group_checkins import group_move_offers_due, groups_checkins, judged_weeks
from signups.groups import cohort_group_move_offers_send, cohorts_group_move_offers_send, group_move_url
from signups.models import CheckIn, Enrollment, LearnerEmail
from signups.tests.factories import EnrollmentFactory

UTC = datetime.UTC
START = datetime.date(2026, 11, 30)  # a Monday
WEEK_3 = datetime.datetime(2026, 12, 16, 12, tzinfo=UTC)  # Wednesday of week 3: weeks 1 and 2 are judged
DONE, BEHIND = CheckIn.Answer.DONE, CheckIn.Answer.BEHIND

pytestmark = [pytest.mark.django_db, pytest.mark.clock(WEEK_3)]


def check_in(enrollment, week, answer=DONE):
    moment = datetime.datetime.combine(START + datetime.timedelta(weeks=week - 1, days=1), datetime.time(18), tzinfo=UTC)
    CheckIn.objects.create(learner=enrollment.learner, cohort=enrollment.cohort, week_number=week, answer=answer, answered_at=moment, changed_at=moment)


def group(cohort, number, members, strategy=GroupStrategy.TIMEZONE, offset=0, timezone_name="Europe/Lisbon"):
    made = StudyGroup.objects.create(cohort=cohort, number=number, name=f"Group {number}", slug=f"{cohort.slug}-{number}",
                                     utc_offset_minutes=offset, strategy=strategy, discussion_url=f"https://forum.example.org/g{number}")
    return made, [EnrollmentFactory(cohort=cohort, group=made, learner__timezone=timezone_name, learner__first_name=f"M{number}") for _ in range(members)]


@pytest.fixture
def round_(db):
    return CohortFactory(course=CourseFactory(week_count=5), name="Winter round", slug="winter", start_date=START,
                         signup_opens_on=START - datetime.timedelta(weeks=4), signup_closes_on=START,
                         group_strategy=GroupStrategy.TIMEZONE, reform_by_activity=True)


@pytest.fixture
def groups(round_):
    """Group 1 (12 members, Lisbon): quiet, 2 of 12 checked in each week (under 20%): Ada did both
    weeks, Bea did week 1 and is behind in week 2. Group 2 (8, Lisbon): active, 4 of 8 did both
    weeks (Dan among them). Group 3: active, lively, but formed at random. Group 4: active,
    lively, but in Tokyo's band. Group 5 (6, Los Angeles): quiet; Eve did both weeks, and no
    active group of her band exists."""
    quiet, (ada, bea, *_) = group(round_, 1, 12)
    active, (dan, *active_members) = group(round_, 2, 8)
    random_group, random_members = group(round_, 3, 6, strategy=GroupStrategy.RANDOM)
    tokyo, tokyo_members = group(round_, 4, 6, offset=540, timezone_name="Asia/Tokyo")
    far_quiet, (eve, *_) = group(round_, 5, 6, offset=-480, timezone_name="America/Los_Angeles")
    for week in (1, 2):
        check_in(ada, week)
        check_in(eve, week)
        for member in [dan, *active_members[:3], *random_members, *tokyo_members]:
            check_in(member, week)
    check_in(bea, 1)
    check_in(bea, 2, BEHIND)
    return {"quiet": quiet, "active": active, "random": random_group, "tokyo": tokyo, "far_quiet": far_quiet,
            "ada": ada, "bea": bea, "dan": dan, "eve": eve}


# --- The rate per group, the quiet ones ------------------------------------------------------------


def test_groups_are_judged_on_the_last_two_finished_weeks(round_):
    assert judged_weeks(round_, START + datetime.timedelta(days=13)) == []  # week 2: one week finished
    assert judged_weeks(round_, WEEK_3.date()) == [1, 2]
    assert judged_weeks(round_, START + datetime.timedelta(weeks=9)) == [4, 5]  # after the round: its last two


def test_each_groups_weekly_rate_marks_the_quiet_ones(groups, round_, django_assert_num_queries):
    with django_assert_num_queries(1):
        weeks, rows = groups_checkins(round_, WEEK_3.date())

    assert weeks == [1, 2, 3]
    by_name = {row.name: row for row in rows}
    assert by_name["Group 1"].members == 12 and by_name["Group 1"].checked_in == {1: 2, 2: 2, 3: 0}
    assert by_name["Group 2"].checked_in == {1: 4, 2: 4, 3: 0} and by_name["Group 2"].share(1) == 0.5
    assert [row.name for row in rows if row.quiet] == ["Group 1", "Group 5"]


def test_one_member_more_checking_in_one_week_is_not_quiet(groups, round_):
    third = Enrollment.objects.filter(group=groups["quiet"]).exclude(pk__in=[groups["ada"].pk, groups["bea"].pk]).first()
    check_in(third, 1)  # week 1: 3 of 12 = 25%

    _, rows = groups_checkins(round_, WEEK_3.date())
    assert not next(row for row in rows if row.name == "Group 1").quiet


def test_the_cohorts_page_shows_the_rates_and_marks_the_quiet_groups(groups, round_, admin_client):
    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[round_.pk])).content.decode()

    assert "Weekly check-ins per group" in page
    assert "2 of 5 groups quiet" in page and "judged on weeks 1 and 2" in page
    assert page.count('class="quiet-group"') == 2
    assert "2 (17%)" in page  # Group 1, each week


# --- Who is offered a move ------------------------------------------------------------------------


def test_only_a_learner_who_did_both_weeks_in_a_quiet_group_with_somewhere_to_go_is_offered(groups, round_):
    offers = group_move_offers_due(round_, WEEK_3.date())

    # Not Bea (behind in week 2), not Dan (his group is active), not Eve (no active group of her band).
    assert [offer.enrollment.pk for offer in offers] == [groups["ada"].pk]
    # Group 2: same strategy and band, with room; not the livelier Group 3 (random) nor Group 4 (Tokyo).
    assert offers[0].destination.name == "Group 2"


def test_a_paused_or_unsubscribed_learner_or_a_round_that_does_not_reform_gets_no_offer(groups, round_):
    Enrollment.objects.filter(pk=groups["ada"].pk).update(status=Enrollment.Status.PAUSED)
    assert group_move_offers_due(round_, WEEK_3.date()) == []

    Enrollment.objects.filter(pk=groups["ada"].pk).update(status=Enrollment.Status.ACTIVE)
    round_.reform_by_activity = False
    assert group_move_offers_due(round_, WEEK_3.date()) == []


def test_nobody_is_offered_before_week_3(groups, round_):
    assert group_move_offers_due(round_, START + datetime.timedelta(days=10)) == []


def test_the_offer_is_mailed_through_the_outbox_once(groups, round_, clock, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert cohorts_group_move_offers_send(clock.now()) == {round_: 1}
    assert cohort_group_move_offers_send(round_, clock.now()) == 0  # again: nobody twice

    (email,) = LearnerEmail.objects.filter(template="group_move_offer")
    assert email.learner_id == groups["ada"].learner_id and email.status == LearnerEmail.Status.SENT
    (message,) = mail.outbox
    assert message.to == [groups["ada"].learner.email]
    assert message.subject == "Winter round: move to a livelier study group?"
    assert group_move_url(groups["ada"].pk, groups["quiet"].pk) in message.body
    assert "Group 1" in message.body
    assert Enrollment.objects.get(pk=groups["ada"].pk).group_move_offered_at is not None
    # A week later she still qualifies (she did week 3 too, her group did not), and gets nothing more.
    clock.shift(datetime.timedelta(weeks=1))
    check_in(groups["ada"], 3)
    assert [offer.enrollment.pk for offer in group_move_offers_due(round_.__class__.objects.get(pk=round_.pk), clock.today())] == []
    assert cohort_group_move_offers_send(round_, clock.now()) == 0


# --- The one-click move -----------------------------------------------------------------------


def move_link(groups) -> str:
    return reverse("signups:group-move", args=[group_move_url(groups["ada"].pk, groups["quiet"].pk).rstrip("/").split("/")[-2]])


def test_opening_the_link_moves_nobody(groups, client):
    response = client.get(move_link(groups))

    assert response.status_code == 200
    assert "Move me to an active group" in response.content.decode()
    assert Enrollment.objects.get(pk=groups["ada"].pk).group_id == groups["quiet"].pk


def test_the_button_moves_her_into_the_active_group_once(groups, client, clock):
    response = client.post(move_link(groups))

    assert response.status_code == 200 and "You are now in Group 2" in response.content.decode()
    ada = Enrollment.objects.get(pk=groups["ada"].pk)
    assert ada.group_id == groups["active"].pk and ada.group_moved_from == "Group 1"
    assert ada.group_moved_at is not None

    again = client.post(move_link(groups))
    assert "You have moved already" in again.content.decode()
    assert Enrollment.objects.get(pk=groups["ada"].pk).group_moved_at == ada.group_moved_at


def test_when_no_active_group_has_room_she_is_told_and_stays(groups, round_, client):
    for _ in range(round_.group_size_max - 8):
        EnrollmentFactory(cohort=round_, group=groups["active"])

    response = client.post(move_link(groups))

    assert response.status_code == 409 and "No active group has room just now" in response.content.decode()
    assert Enrollment.objects.get(pk=groups["ada"].pk).group_id == groups["quiet"].pk


def test_a_forged_link_gets_the_bad_link_page(groups, client):
    response = client.post(reverse("signups:group-move", args=[move_link(groups).split("/")[-3] + "x"]))

    assert response.status_code == 400 and "This link does not work" in response.content.decode()
    assert Enrollment.objects.get(pk=groups["ada"].pk).group_id == groups["quiet"].pk


def test_the_next_weekly_email_tells_the_move_once(groups, round_, client, clock):
    client.post(move_link(groups))

    def told():
        enrollments = Enrollment.objects.filter(pk=groups["ada"].pk).select_related("learner", "group", "switched_from")
        return email_contexts(round_, None, enrollments, clock.today())[groups["ada"].pk]["group"]["moved_from"]

    assert told() == "Group 1"
    sent = clock.now() + datetime.timedelta(days=5)
    Delivery.objects.create(learner=groups["ada"].learner, cohort=round_, kind=EmailKind.WEEK, week_number=4,
                            status=Delivery.Status.SENT, due_at=sent, sent_at=sent)
    assert told() == ""


def test_the_round_setting_is_on_the_cohorts_form(round_, admin_client):
    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[round_.pk])).content.decode()

    assert 'name="reform_by_activity"' in page and "offer moves to active learners in quiet groups" in page.lower()


def test_beat_runs_the_offers_hourly():
    from mooc.celery import app

    entry = app.conf.beat_schedule["group-move-offers"]
    assert entry["task"] == "signups.tasks.group_move_offers_due" and entry["schedule"] == 3600
    assert app.tasks[entry["task"]]  # the task exists under that name
