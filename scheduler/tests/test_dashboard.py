"""The organizer dashboard's numbers, against a round built by hand, its pages, permissions and CSV."""

import csv
import datetime
import io

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from cohorts.models import StudyGroup
from cohorts.tests.factories import CohortFactory, CourseFactory
from mooc.permissions import ORGANIZER, VIEWER
from scheduler.dashboard import cohort_dashboard, course_dashboard
from scheduler.models import Delivery, EmailKind, TrackingEvent
from signups.models import Enrollment, Erasure, Suppression
from signups.services import enrollment_leave, learner_erase, learner_unsubscribe
from signups.suppressions import learner_mail_stop
from signups.tests.factories import EnrollmentFactory

UTC = datetime.UTC
START = datetime.date(2026, 11, 30)  # a Monday; 5 weeks: week 5 begins 28 Dec, the round ends 3 Jan
NOW = datetime.datetime(2027, 1, 1, 12, tzinfo=UTC)  # in week 5, whose email has not gone out

pytestmark = [pytest.mark.django_db, pytest.mark.clock(NOW)]


def on(month: int, day: int, hour: int = 10) -> datetime.datetime:
    return datetime.datetime(2026 if month > 6 else 2027, month, day, hour, tzinfo=UTC)


def mail(enrollment, week=0, kind=EmailKind.WEEK, status=Delivery.Status.SENT, *, delivered=False, opened=False, clicked=False, bounced=False):
    moment = datetime.datetime.combine(START + datetime.timedelta(weeks=max(week - 1, 0)), datetime.time(9), tzinfo=UTC)
    later = moment + datetime.timedelta(hours=1)
    return Delivery.objects.create(
        learner=enrollment.learner, cohort=enrollment.cohort, kind=kind, week_number=week, status=status, due_at=moment,
        sent_at=moment if status == Delivery.Status.SENT else None,
        delivered_at=later if delivered else None, opened_at=later if opened else None,
        clicked_at=later if clicked else None, bounced_at=later if bounced else None,
    )


def weeks(enrollment, *numbers, **flags):
    for number in numbers:
        mail(enrollment, number, **flags)


@pytest.fixture
def round_(db):
    course = CourseFactory(week_count=5, slug="python")
    return CohortFactory(
        course=course, name="Winter round", slug="winter", start_date=START,
        signup_opens_on=START - datetime.timedelta(weeks=4), signup_closes_on=START,
    )


@pytest.fixture
def groups(round_):
    return [
        StudyGroup.objects.create(cohort=round_, number=n, name=f"Group {n}", slug=f"winter-{n}", utc_offset_minutes=0)
        for n in (1, 2, 3)
    ]


@pytest.fixture
def learners(round_, groups):
    """Twelve learners of a five-week round in week 5, each with a story (see the counts below)."""
    g1, g2, g3 = groups
    later_round = CohortFactory(course=round_.course, slug="spring", start_date=START + datetime.timedelta(weeks=4))

    def member(name, group=None, status=Enrollment.Status.ACTIVE, **learner):
        return EnrollmentFactory(cohort=round_, status=status, group=group, learner__first_name=name,
                                 learner__email=f"{name.lower()}@example.org", **{f"learner__{k}": v for k, v in learner.items()})

    ada = member("Ada", g1)
    weeks(ada, 1, delivered=True, opened=True, clicked=True)
    weeks(ada, 2, delivered=True, opened=True)
    weeks(ada, 3, 4, delivered=True)
    mail(ada, kind=EmailKind.COURSE_END, delivered=True)
    bob = member("Bob", g1)
    weeks(bob, 1, 2, 4, delivered=True)
    weeks(bob, 3, delivered=True, opened=True)
    # Cat's address bounced hard on week 2's email: her mail stops; her enrollment stays as it was.
    cat = member("Cat", g2)
    weeks(cat, 1, delivered=True, opened=True)
    mail(cat, 2, bounced=True)
    learner_mail_stop(cat.learner_id, Suppression.Reason.BOUNCED, on(12, 8))
    # Dan dropped back to the spring round in week 2.
    dan = member("Dan", g2)
    weeks(dan, 1, delivered=True)
    Enrollment.objects.filter(pk=dan.pk).update(status=Enrollment.Status.SWITCHED, ended_at=on(12, 9))
    EnrollmentFactory(learner=dan.learner, cohort=later_round, switched_from=round_)
    # Eve left in week 1; her week 1 was sent, and the provider never said it arrived.
    eve = member("Eve", g2)
    mail(eve, 1)
    enrollment_leave(eve, on(12, 2))
    # Fay unsubscribed in week 3 (which ends her enrollment: unsubscribed, not left).
    fay = member("Fay", g1)
    weeks(fay, 1, delivered=True, opened=True)
    weeks(fay, 2, 3, delivered=True)
    learner_unsubscribe(fay.learner, on(12, 15))
    member("Gus", status=Enrollment.Status.PENDING, confirmed_at=None)
    hal = member("Hal")  # not in a group
    weeks(hal, 1, 2, 3, 4, delivered=True)
    # Ivy left before the round began.
    ivy = member("Ivy")
    enrollment_leave(ivy, on(11, 25))
    jon = member("Jon", g2)
    weeks(jon, 1, delivered=True, opened=True)
    weeks(jon, 2, 3, 4, delivered=True)
    kim = member("Kim", g2, status=Enrollment.Status.PAUSED)
    weeks(kim, 1, 2, 3, delivered=True)
    weeks(kim, 4, delivered=True, opened=True, clicked=True)
    lee = member("Lee", g3)
    weeks(lee, 1, 2, 3, 4, delivered=True)
    return locals()


def funnel_counts(board):
    return {step.key: step.count for step in board.funnel}


def test_the_funnel_counts_each_step(learners, round_, clock):
    board = cohort_dashboard(round_, clock.now())

    assert board.delivered_reported
    assert funnel_counts(board) == {
        "signed_up": 12, "confirmed": 11, "grouped": 9,
        "week_1_delivered": 9, "week_1_opened": 4,
        "week_2_delivered": 7, "week_2_opened": 1,
        "week_3_delivered": 7, "week_3_opened": 1,
        "week_4_delivered": 6, "week_4_opened": 1,
        "week_5_delivered": 0, "week_5_opened": 0,
        "course_end": 1,
    }
    assert [step.share for step in board.funnel[:3]] == [1, 11 / 12, 9 / 12]
    assert board.funnel[3].percent == "75.0%"


def test_each_week_counts_its_email_and_what_learners_did_in_it(learners, round_, clock):
    board = cohort_dashboard(round_, clock.now())

    rows = {row.label: (row.email_counts, row.unsubscribed, row.dropped_back, row.left) for row in board.weeks}
    assert rows == {
        "Before week 1": ([None] * 5, 0, 0, 1),  # Ivy
        "Week 1": ([10, 9, 0, 4, 1], 0, 0, 1),  # Eve left
        "Week 2": ([8, 7, 1, 1, 0], 1, 1, 0),  # Cat's address bounced; Dan dropped back
        "Week 3": ([7, 7, 0, 1, 0], 1, 0, 0),  # Fay unsubscribed (her enrollment ended with it: not "left")
        "Week 4": ([6, 6, 0, 1, 1], 0, 0, 0),
        "Week 5": ([0, 0, 0, 0, 0], 0, 0, 0),
        "After the last week": ([None] * 5, 0, 0, 0),
    }


@pytest.mark.clock("2026-12-14T00:00:00Z")
def test_a_week_begins_at_midnight_of_its_first_day(round_, clock):
    week_3 = datetime.datetime(2026, 12, 14, tzinfo=UTC)
    enrollment_leave(EnrollmentFactory(cohort=round_), week_3)
    enrollment_leave(EnrollmentFactory(cohort=round_), week_3 - datetime.timedelta(microseconds=1))

    left = {row.week: row.left for row in cohort_dashboard(round_, clock.now()).weeks}
    assert (left[2], left[3]) == (1, 1)


def test_the_quietest_groups_are_judged_on_the_last_three_weekly_emails_sent(learners, round_, clock):
    board = cohort_dashboard(round_, clock.now())

    assert board.quiet_weeks == [2, 3, 4]  # week 5 has not gone out
    # Members are the current ones (active or paused): Cat (bounced) stays in group 2; Dan, Eve
    # and Fay have gone. Jon opened only week 1, too long ago.
    assert [(g.name, g.members, g.opened, g.last_opened_week) for g in board.quiet_groups] == [
        ("Group 3", 1, 0, None),
        ("Group 2", 3, 1, 4),
        ("Group 1", 2, 2, 3),
    ]
    assert board.quiet_groups[1].percent == "33.3%"


def test_suppressions_by_reason_erasures_and_orphaned_events(learners, round_, clock):
    complainer = EnrollmentFactory(cohort=round_)
    learner_mail_stop(complainer.learner_id, Suppression.Reason.COMPLAINED, clock.now())
    elsewhere = EnrollmentFactory()
    learner_unsubscribe(elsewhere.learner, clock.now())  # another round's learner
    learner_erase(EnrollmentFactory(cohort=round_).learner, clock.today())
    for days, learner, applied in [(5, None, True), (29, None, True), (31, None, True), (1, learners["ada"].learner, True), (0, None, False)]:
        moment = clock.now() - datetime.timedelta(days=days)
        TrackingEvent.objects.create(  # not applied yet: not known to be orphaned
            esp="postmark", event_key=f"e{days}", event_type="opened", occurred_at=moment, received_at=moment, learner=learner,
            applied_at=moment if applied else None,
        )

    board = cohort_dashboard(round_, clock.now())

    assert {row.reason: row.count for row in board.suppressions} == {
        "unsubscribed": 1, "refused": 0, "bounced": 1, "soft_bounced": 0, "complained": 1,
    }
    assert board.erased == 1
    assert board.orphaned_events == 2


def test_without_any_delivery_reported_the_funnel_counts_sent_and_says_so(round_, admin_client, clock):
    for _ in range(3):
        enrollment = EnrollmentFactory(cohort=round_)
        mail(enrollment, 1)
    mail(enrollment, 2, status=Delivery.Status.FAILED)

    board = cohort_dashboard(round_, clock.now())

    assert not board.delivered_reported
    assert funnel_counts(board)["week_1_sent"] == 3
    assert funnel_counts(board)["week_2_sent"] == 0
    assert board.funnel[3].label == "Week 1 sent"
    page = admin_client.get(reverse("admin:cohorts_cohort_dashboard", args=[round_.pk])).content.decode()
    assert "No delivery reported" in page and "Week 1 sent" in page


def test_the_selector_takes_seven_queries_however_many_learners(learners, round_, clock, django_assert_num_queries):
    with django_assert_num_queries(7):
        cohort_dashboard(round_, clock.now())
    more = EnrollmentFactory.create_batch(20, cohort=round_, group=StudyGroup.objects.get(slug="winter-3"))
    for enrollment in more:
        weeks(enrollment, 1, 2, 3, 4, delivered=True, opened=True)
    with django_assert_num_queries(7):
        cohort_dashboard(round_, clock.now())


def _queries_of(client, url) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
        assert response.status_code == 200
    return len(captured)


def test_the_page_takes_a_fixed_number_of_queries(learners, round_, admin_client, django_assert_num_queries):
    url = reverse("admin:cohorts_cohort_dashboard", args=[round_.pk])
    before = _queries_of(admin_client, url)
    for enrollment in EnrollmentFactory.create_batch(20, cohort=round_, group=StudyGroup.objects.get(slug="winter-1")):
        weeks(enrollment, 1, 2, delivered=True, opened=True)
    with django_assert_num_queries(before):
        assert admin_client.get(url).status_code == 200


def test_the_page_shows_the_funnel_chart_and_the_tables(learners, round_, admin_client):
    page = admin_client.get(reverse("admin:cohorts_cohort_dashboard", args=[round_.pk])).content.decode()

    assert '<svg class="funnel-chart"' in page
    assert "<title id=\"funnel-%d-title\">Funnel of Winter round</title>" % round_.pk in page
    assert "Week 4 opened" in page and "No delivery reported" not in page
    assert "Group 3" in page
    assert reverse("admin:cohorts_cohort_dashboard_csv", args=[round_.pk, "learners"]) in page


def test_the_cohort_and_course_pages_and_the_list_link_to_the_dashboards(round_, admin_client):
    dashboard = reverse("admin:cohorts_cohort_dashboard", args=[round_.pk])
    course_dashboard_url = reverse("admin:cohorts_course_dashboard", args=[round_.course_id])

    assert dashboard in admin_client.get(reverse("admin:cohorts_cohort_change", args=[round_.pk])).content.decode()
    assert dashboard in admin_client.get(reverse("admin:cohorts_cohort_changelist")).content.decode()
    assert course_dashboard_url in admin_client.get(reverse("admin:cohorts_course_change", args=[round_.course_id])).content.decode()


def test_the_course_dashboard_sets_each_round_side_by_side(learners, round_, admin_client, django_assert_num_queries):
    spring = round_.course.cohorts.get(slug="spring")
    dan_in_spring = Enrollment.objects.get(cohort=spring)
    mail(dan_in_spring, 1)

    board = course_dashboard(round_.course)

    assert [cohort.slug for cohort, _, _ in board.rounds] == ["winter", "spring"]
    (_, winter_funnel, winter_reported), (_, spring_funnel, spring_reported) = board.rounds
    assert {step.key: step.count for step in winter_funnel} == funnel_counts(cohort_dashboard(round_, NOW))
    assert (winter_reported, spring_reported) == (True, False)
    assert {step.key: step.count for step in spring_funnel}["week_1_sent"] == 1
    with django_assert_num_queries(3):
        course_dashboard(round_.course)
    page = admin_client.get(reverse("admin:cohorts_course_dashboard", args=[round_.course_id])).content.decode()
    assert page.count('<svg class="funnel-chart"') == 2
    assert "No delivery reported" in page


# --- Permissions ---------------------------------------------------------------------------------


def staff(django_user_model, *roles, permissions=()):
    user = django_user_model.objects.create_user("someone", "someone@example.org", "a-long-test-password", is_staff=True)
    for role in roles:
        user.groups.add(Group.objects.get(name=role))
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


DASHBOARD_URLS = [
    ("admin:cohorts_cohort_dashboard", lambda round_: [round_.pk]),
    ("admin:cohorts_cohort_dashboard_csv", lambda round_: [round_.pk, "funnel"]),
    ("admin:cohorts_cohort_dashboard_csv", lambda round_: [round_.pk, "learners"]),
    ("admin:cohorts_course_dashboard", lambda round_: [round_.course_id]),
    ("admin:cohorts_course_dashboard_csv", lambda round_: [round_.course_id]),
]


@pytest.mark.parametrize("url_name, args", DASHBOARD_URLS)
def test_staff_who_may_not_see_cohorts_get_403(round_, client, django_user_model, url_name, args):
    client.force_login(staff(django_user_model, permissions=["cohorts.view_course", "signups.view_learner"]))

    assert client.get(reverse(url_name, args=args(round_))).status_code == 403


def test_a_viewer_sees_the_counts_but_not_the_learners(learners, round_, client, django_user_model):
    client.force_login(staff(django_user_model, VIEWER))
    learners_csv = reverse("admin:cohorts_cohort_dashboard_csv", args=[round_.pk, "learners"])

    page = client.get(reverse("admin:cohorts_cohort_dashboard", args=[round_.pk]))
    assert page.status_code == 200 and learners_csv not in page.content.decode()
    assert client.get(reverse("admin:cohorts_cohort_dashboard_csv", args=[round_.pk, "weeks"])).status_code == 200
    assert client.get(learners_csv).status_code == 403


def test_an_organizer_may_download_the_learners(learners, round_, client, django_user_model):
    client.force_login(staff(django_user_model, ORGANIZER))

    assert client.get(reverse("admin:cohorts_cohort_dashboard_csv", args=[round_.pk, "learners"])).status_code == 200


def test_an_unknown_table_is_404(round_, admin_client):
    assert admin_client.get(reverse("admin:cohorts_cohort_dashboard_csv", args=[round_.pk, "secrets"])).status_code == 404


# --- CSV -----------------------------------------------------------------------------------------


def download(client, round_, table) -> list[list[str]]:
    response = client.get(reverse("admin:cohorts_cohort_dashboard_csv", args=[round_.pk, table]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="winter-{table}.csv"' in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_tables_as_csv(learners, round_, admin_client):
    funnel = download(admin_client, round_, "funnel")
    assert funnel[:4] == [["step", "learners", "percent of signed up"], ["Signed up", "12", "100.0"], ["Confirmed", "11", "91.7"], ["Grouped", "9", "75.0"]]
    assert funnel[-1] == ["Course end delivered", "1", "8.3"]
    weeks_ = download(admin_client, round_, "weeks")
    assert weeks_[0] == ["week", "sent", "delivered", "bounced", "opened", "clicked", "unsubscribed", "dropped back", "left"]
    assert weeks_[1] == ["Before week 1", "", "", "", "", "", "0", "0", "1"]
    assert weeks_[3] == ["Week 2", "8", "7", "1", "1", "0", "1", "1", "0"]
    quiet = download(admin_client, round_, "quiet-groups")
    assert quiet[0][2] == "opened any of weeks 2, 3, 4"
    assert quiet[1:] == [["Group 3", "1", "0", "0.0", ""], ["Group 2", "3", "1", "33.3", "4"], ["Group 1", "2", "2", "100.0", "3"]]
    suppressions = download(admin_client, round_, "suppressions")
    assert ["Hard bounce", "1"] in suppressions and ["Unsubscribed", "1"] in suppressions
    assert suppressions[-1] == ["Erased their data (a count only)", "0"]


def test_the_learners_csv(learners, round_, admin_client, clock):
    rows = download(admin_client, round_, "learners")

    assert rows[0] == [
        "email", "first name", "time zone", "status", "group", "confirmed", "last delivered week", "last opened week", "last clicked week",
    ]
    by_email = {row[0]: row for row in rows[1:]}
    assert len(rows) == 13 and len(by_email) == 12
    ada = by_email["ada@example.org"]
    assert ada[1:5] == ["Ada", "Europe/Lisbon", "Active", "Group 1"]
    assert ada[6:] == ["4", "2", "1"]
    assert by_email["dan@example.org"][3:5] == ["Moved to another cohort", "Group 2"]
    assert by_email["dan@example.org"][6:] == ["1", "", ""]  # spring's email is not this round's
    assert by_email["gus@example.org"][5:] == ["", "", "", ""]
    assert by_email["kim@example.org"][6:] == ["4", "4", "4"]


def test_an_erased_learner_is_not_in_the_learners_csv(learners, round_, admin_client, clock):
    erased = EnrollmentFactory(cohort=round_, learner__email="gone@example.org")
    weeks(erased, 1, delivered=True)
    assert "gone@example.org" in {row[0] for row in download(admin_client, round_, "learners")}

    learner_erase(erased.learner, clock.today())

    emails = {row[0] for row in download(admin_client, round_, "learners")}
    assert "gone@example.org" not in emails and "ada@example.org" in emails
    assert Erasure.objects.filter(cohort=round_).count() == 1


def test_csv_cells_never_start_a_formula(round_, groups, admin_client):
    for n, first_name in enumerate(["=HYPERLINK(\"http://evil\")", "+1", "-2", "@SUM(A1)", "Plain"]):
        EnrollmentFactory(cohort=round_, learner__first_name=first_name, learner__email=f"l{n}@example.org", group=groups[0])
    groups[1].name = "=cmd|' /C calc'!A0"
    groups[1].save()
    EnrollmentFactory(cohort=round_, group=groups[1], learner__email="z@example.org")
    mail(Enrollment.objects.get(learner__email="z@example.org"), 1, delivered=True)

    names = [row[1] for row in download(admin_client, round_, "learners")[1:]]
    assert names[:5] == ["'=HYPERLINK(\"http://evil\")", "'+1", "'-2", "'@SUM(A1)", "Plain"]
    quiet = download(admin_client, round_, "quiet-groups")
    assert "'=cmd|' /C calc'!A0" in [row[0] for row in quiet]
