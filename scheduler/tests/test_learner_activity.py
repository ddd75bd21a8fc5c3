"""What each learner did with their weekly emails (last week sent, delivered, opened, clicked), the
quiet rule (README, "Quiet learners"), and the learner admin's block that shows both."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from cohorts.tests.factories import CohortFactory
from scheduler.models import Delivery, EmailKind
from scheduler.selectors import WeekActivity, learner_activity, learners_quiet
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def cohort(db):
    return CohortFactory(name="Spring round")


def learner_in(cohort, **fields):
    return EnrollmentFactory(cohort=cohort, **fields).learner


def weekly_emails(learner, cohort, now, *, delivered=(), opened=(), clicked=(), sent=(), kind=EmailKind.WEEK):
    """Ledger rows for the weeks named: sent; first delivered, opened or clicked as the events
    would set them (an open implies a delivery, a click an open)."""
    weeks = sorted(set(sent) | set(delivered) | set(opened) | set(clicked))
    for week in weeks:
        opened_at = now if week in opened or week in clicked else None
        Delivery.objects.create(
            learner=learner, cohort=cohort, kind=kind, week_number=week if kind == EmailKind.WEEK else 0, due_at=now,
            status=Delivery.Status.SENT, sent_at=now,
            delivered_at=now if (week in delivered or opened_at) else None,
            opened_at=opened_at, clicked_at=now if week in clicked else None,
        )


# --- Activity --------------------------------------------------------------------------------------


def test_activity_is_the_last_week_of_each_kind_per_learner_and_round(cohort, clock, django_assert_num_queries):
    now = clock.now()
    later = CohortFactory(course=cohort.course, name="Summer round")
    ada, grace, alan = learner_in(cohort), learner_in(cohort), learner_in(cohort)
    weekly_emails(ada, cohort, now, sent=[5], delivered=[1, 2, 3, 4], opened=[2], clicked=[1])
    weekly_emails(ada, later, now, delivered=[1])
    weekly_emails(grace, cohort, now, sent=[1, 2])  # the provider reported nothing
    weekly_emails(alan, cohort, now, sent=[0], kind=EmailKind.WELCOME)  # not a weekly email

    with django_assert_num_queries(1):
        activity = learner_activity([ada.pk, grace.pk, alan.pk])

    assert activity == {
        ada.pk: {cohort.pk: WeekActivity(5, 4, 2, 1), later.pk: WeekActivity(1, 1, None, None)},
        grace.pk: {cohort.pk: WeekActivity(2, None, None, None)},
    }
    assert learner_activity([]) == {}


# --- The quiet rule -----------------------------------------------------------------------------------


def test_quiet_means_none_of_the_last_three_delivered_was_opened(cohort, clock, django_assert_num_queries):
    now = clock.now()
    never = learner_in(cohort)
    weekly_emails(never, cohort, now, delivered=[1, 2, 3])
    opened_long_ago = learner_in(cohort)
    weekly_emails(opened_long_ago, cohort, now, delivered=[2, 3, 4, 5], opened=[1])
    opened_recently = learner_in(cohort)
    weekly_emails(opened_recently, cohort, now, delivered=[1, 2, 4, 5], opened=[3])
    clicked_recently = learner_in(cohort)
    weekly_emails(clicked_recently, cohort, now, delivered=[1, 2, 3, 5], clicked=[4])
    # Two delivered only (the third was not): too little to say.
    two_delivered = learner_in(cohort)
    weekly_emails(two_delivered, cohort, now, delivered=[1, 3], sent=[2])
    # Opened in the middle: weeks 3, 5 and 6 after it (week 4 never arrived) are three in a row.
    gap = learner_in(cohort)
    weekly_emails(gap, cohort, now, delivered=[1, 3, 5, 6], opened=[2], sent=[4])

    with django_assert_num_queries(2):
        quiet = learners_quiet(cohort)

    assert quiet == {never.pk, opened_long_ago.pk, gap.pk}


def test_nobody_is_quiet_when_the_provider_reports_no_opens_for_the_round(cohort, clock):
    now = clock.now()
    other_round = CohortFactory(course=cohort.course, name="Summer round")
    learner = learner_in(cohort)
    weekly_emails(learner, cohort, now, delivered=[1, 2, 3, 4])
    weekly_emails(learner_in(other_round), other_round, now, opened=[1])  # another round's opens do not count

    assert learners_quiet(cohort) == set()

    weekly_emails(learner_in(cohort), cohort, now, opened=[1])  # open tracking is on for this round

    assert learners_quiet(cohort) == {learner.pk}


def test_another_rounds_emails_and_other_kinds_do_not_count(cohort, clock):
    now = clock.now()
    other_round = CohortFactory(course=cohort.course, name="Summer round")
    learner = learner_in(cohort)
    weekly_emails(learner, cohort, now, delivered=[1, 2], opened=[])
    weekly_emails(learner, other_round, now, delivered=[1, 2, 3])
    weekly_emails(learner, cohort, now, delivered=[0], kind=EmailKind.WELCOME)
    weekly_emails(learner_in(cohort), cohort, now, opened=[1])

    assert learners_quiet(cohort) == set()
    assert learners_quiet(cohort, weeks=2) == {learner.pk}


def test_quiet_among_some_learners_only(cohort, clock):
    now = clock.now()
    ada, grace = learner_in(cohort), learner_in(cohort)
    for learner in (ada, grace):
        weekly_emails(learner, cohort, now, delivered=[2, 3, 4], opened=[1])

    assert learners_quiet(cohort) == {ada.pk, grace.pk}
    assert learners_quiet(cohort, learner_ids=[grace.pk]) == {grace.pk}


# --- On the learner's admin page -----------------------------------------------------------------


def staff(*codenames) -> Client:
    user = User.objects.create_user("-".join(codenames), "staff@staff.example", "pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_the_learner_page_shows_activity_per_enrollment_to_those_who_may_read_the_ledger(cohort, clock):
    learner = learner_in(cohort, learner__email="ada+mooc@example.org")
    weekly_emails(learner, cohort, clock.now(), delivered=[1, 2, 3, 4], opened=[1], clicked=[1])
    url = reverse("admin:signups_learner_change", args=[learner.pk])

    page = staff("view_learner", "view_delivery").get(url).content.decode()
    hidden = staff("view_learner").get(url).content.decode()

    assert 'id="learner-activity"' in page
    assert "<td>Spring round</td>" in page
    assert "<td>4</td>" in page and "<td>1</td>" in page
    assert "yes: none of the last 3 delivered opened" in page
    assert "q=ada%2Bmooc%40example.org" in page  # the ledger, filtered to this learner and round
    assert 'id="learner-activity"' not in hidden and learner.email in hidden


def test_a_learner_in_no_round_yet_has_an_empty_block(cohort):
    learner = EnrollmentFactory(cohort=None, course=cohort.course).learner

    page = staff("view_learner", "view_delivery").get(reverse("admin:signups_learner_change", args=[learner.pk])).content.decode()

    assert "Not in any round yet." in page


# --- Re-forming groups asks the scheduler who is quiet -------------------------------------------


def test_reforming_from_the_admin_counts_quiet_learners_as_not_active(admin_client, cohort, clock):
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    from cohorts.models import StudyGroup
    from signups import groups
    from signups.groups import cohort_groups_form
    from signups.models import Enrollment

    assert learners_quiet in groups.QUIET_LEARNERS  # registered by scheduler/apps.py
    now = clock.now()
    for _ in range(20):
        learner_in(cohort, learner__timezone="Europe/Lisbon")
    cohort_groups_form(cohort, now=now)
    cohort.group_size_max = 20
    cohort.save()
    second = StudyGroup.objects.get(cohort=cohort, number=2)
    quiet = set(Enrollment.objects.filter(group=second).order_by("pk").values_list("learner_id", flat=True)[:5])
    for enrollment in Enrollment.objects.filter(cohort=cohort).select_related("learner"):
        opened = [] if enrollment.learner_id in quiet else [3]
        weekly_emails(enrollment.learner, cohort, now, delivered=[1, 2, 3], opened=opened)

    response = admin_client.post(
        reverse("admin:cohorts_cohort_changelist"), {"action": "reform_groups", ACTION_CHECKBOX_NAME: [cohort.pk]}, follow=True
    )

    assert "moved 10 learners; groups merged away: Group 2; 5 quiet learners not counted as active." in response.content.decode()
