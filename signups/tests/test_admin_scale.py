"""Admin pages that stay usable at any size: the cohort's groups a page at a time, members on the
group's own page, the ledger searched exactly and counted by estimate."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cohorts.models import StudyGroup
from cohorts.services import study_groups_create
from mooc import admin_paging
from scheduler.models import Delivery, EmailKind
from signups.models import Enrollment
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db


def groups_of_two(cohort, count):
    """`count` groups of two learners each, written as formation would."""
    groups = study_groups_create(cohort, [0] * count)
    for group in groups:
        for enrollment in EnrollmentFactory.create_batch(2, cohort=cohort, learner__first_name=f"Zq{group.number}x"):
            Enrollment.objects.filter(pk=enrollment.pk).update(group=group)
    return groups


def cohort_page(client, cohort, **query):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:cohorts_cohort_change", args=[cohort.pk]), query)
    assert response.status_code == 200
    return response.content.decode(), len(queries)


def test_the_cohorts_groups_are_listed_a_page_at_a_time_with_their_members_only(admin_client, next_cohort):
    groups_of_two(next_cohort, 60)

    first, _ = cohort_page(admin_client, next_cohort)
    second, _ = cohort_page(admin_client, next_cohort, groups_page=2)

    assert "Groups 1–50 of 60" in first and ">Group 50<" in first and ">Group 51<" not in first
    assert "Zq50x (Europe/Lisbon)" in first and "Zq51x" not in first  # members of the listed groups only
    assert "Groups 51–60 of 60" in second and ">Group 60<" in second and ">Group 1<" not in second


def test_groups_are_found_by_name(admin_client, next_cohort):
    groups_of_two(next_cohort, 30)

    page, _ = cohort_page(admin_client, next_cohort, groups_q="Group 2")

    assert "matching “Group 2”" in page
    listed = sorted(int(number) for number in __import__("re").findall(r">Group (\d+)</a>", page))
    assert listed == [2, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29]


def test_the_cohort_page_costs_the_same_queries_for_3_groups_and_60(admin_client, next_cohort, later_cohort):
    groups_of_two(next_cohort, 3)
    groups_of_two(later_cohort, 60)

    assert cohort_page(admin_client, next_cohort)[1] == cohort_page(admin_client, later_cohort)[1]


def test_a_groups_own_page_lists_its_members_for_those_who_may_see_learners(admin_client, client, next_cohort, django_user_model):
    from django.contrib.auth.models import Group

    from mooc.permissions import VIEWER

    [group] = groups_of_two(next_cohort, 1)
    url = reverse("admin:cohorts_studygroup_change", args=[group.pk])
    assert admin_client.get(url).content.decode().count("Zq1x") == 2

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.groups.add(Group.objects.get(name=VIEWER))
    client.force_login(viewer)
    page = client.get(url)
    assert page.status_code == 200
    assert not viewer.has_perm("signups.view_learner")  # a Viewer sees counts, never a learner
    assert "Zq1x" not in page.content.decode()


@pytest.fixture
def ledger(next_cohort):
    rows = []
    for number in range(3):
        enrollment = EnrollmentFactory(cohort=next_cohort, learner__email=f"ada{number}@example.org")
        rows.append(Delivery.objects.create(learner=enrollment.learner, cohort=next_cohort, kind=EmailKind.WEEK, week_number=1,
                                            due_at=enrollment.created_at, provider_message_id=f"msg-{number}"))
    return rows


def test_the_ledger_is_searched_exactly_on_indexed_columns(admin_client, ledger):
    changelist = reverse("admin:scheduler_delivery_changelist")

    def found(term):
        return list(admin_client.get(changelist, {"q": term}).context["cl"].result_list)

    assert found("ADA1@example.org") == [ledger[1]]  # an address, as stored
    assert found("ada1@") == []  # no substring search
    assert found(str(ledger[2].pk)) == [ledger[2]]
    assert found("msg-0") == [ledger[0]]
    page = admin_client.get(changelist).content.decode()
    assert "date_hierarchy" not in page and "xfull" not in page


@pytest.mark.postgres
def test_a_large_ledger_is_counted_by_the_planners_estimate(admin_client, ledger, monkeypatch):
    monkeypatch.setattr(admin_paging, "EXACT_BELOW", 0)  # treat this small ledger as a large one
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Delivery._meta.db_table}")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:scheduler_delivery_changelist"))

    statements = [query["sql"] for query in queries.captured_queries]
    assert any(sql.startswith("EXPLAIN (FORMAT JSON)") and Delivery._meta.db_table in sql for sql in statements)
    assert not any("COUNT(" in sql.upper() and Delivery._meta.db_table in sql for sql in statements)
    assert response.context["cl"].result_count >= 1


def test_studygroup_admin_has_the_members_inline():
    from django.contrib import admin

    assert "GroupMembersInline" in [inline.__name__ for inline in admin.site._registry[StudyGroup].inlines]


def test_the_quality_counted_in_the_database_matches_formations_own(next_cohort):
    from signups.groups import cohort_groups_form, cohort_groups_quality

    zones = ["Europe/Lisbon", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Auckland"]
    for number in range(60):
        EnrollmentFactory(cohort=next_cohort, learner__timezone=zones[number % 6],
                          learner__experience=["none", "some", "experienced"][number % 3])
    formed = cohort_groups_form(next_cohort, now=next_cohort.created_at)

    counted = cohort_groups_quality(next_cohort)

    def summary(quality):
        return sorted((row.key.pk, row.size, row.spread_hours, sorted(row.experience.items())) for row in quality.groups)

    assert summary(counted) == summary(formed)
    assert (counted.learners, counted.ungrouped) == (formed.learners, formed.ungrouped)
