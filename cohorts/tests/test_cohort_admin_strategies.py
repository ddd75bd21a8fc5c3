"""Organizers choose how a round's groups are formed on its admin page: a strategy, or an experiment
between two; once the groups exist, the choice is kept."""

import threading

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.db import transaction
from django.test import Client
from django.urls import reverse

from cohorts.models import Cohort
from cohorts.services import cohort_lock, cohort_seed_record, study_groups_create
from cohorts.tests.factories import CohortFactory, CourseFactory
from cohorts.tests.test_cohort_admin import change_form_of, cohort_form, field_errors
from mooc.testing.threads import in_threads, lock_waiter_wait

pytestmark = pytest.mark.django_db


def experiment(first, second) -> dict:
    """The form's two drop-downs of an experiment's strategies."""
    return {"group_strategy": "experiment", "experiment_strategies_0": first, "experiment_strategies_1": second}


def test_an_experiment_between_two_strategies_is_chosen_with_two_drop_downs(admin_client):
    page = admin_client.get(reverse("admin:cohorts_cohort_add")).content.decode()
    assert 'name="experiment_strategies_0"' in page and 'name="experiment_strategies_1"' in page
    assert 'name="experiment_seed"' not in page  # recorded at formation, never typed in

    response = admin_client.post(reverse("admin:cohorts_cohort_add"), cohort_form(CourseFactory(), **experiment("timezone_experience", "random")))

    assert response.status_code == 302, field_errors(response)
    cohort = Cohort.objects.get()
    assert (cohort.group_strategy, cohort.experiment_strategies, cohort.experiment_seed) == ("experiment", ["timezone_experience", "random"], None)


def test_a_single_strategy_is_chosen_and_stores_no_experiment(admin_client):
    data = cohort_form(CourseFactory(), group_strategy="random", experiment_strategies_0="timezone", experiment_strategies_1="")

    response = admin_client.post(reverse("admin:cohorts_cohort_add"), data)

    assert response.status_code == 302, field_errors(response)
    assert (Cohort.objects.get().group_strategy, Cohort.objects.get().experiment_strategies) == ("random", [])


@pytest.mark.parametrize(
    "first, second",
    [("random", "random"), ("random", ""), ("", ""), ("experiment", "random"), ("random", "alphabetical")],
)
def test_an_experiment_without_two_different_strategies_is_refused_at_the_field(admin_client, first, second):
    response = admin_client.post(reverse("admin:cohorts_cohort_add"), cohort_form(CourseFactory(), **experiment(first, second)))

    assert response.status_code == 200
    errors = " ".join(field_errors(response)["experiment_strategies"])
    assert "choose two" in errors or "Select a valid choice" in errors, errors
    assert not Cohort.objects.exists()


def formed(cohort, strategies, seed=5):
    """The cohort's groups, formed (as far as its page can tell): one group per strategy, the seed recorded."""
    study_groups_create(cohort, [0] * len(strategies), strategies)
    cohort_seed_record(cohort, seed)
    return cohort


@pytest.mark.parametrize(
    "changes",
    [
        {"group_strategy": "random"},
        experiment("timezone_experience", "random"),
    ],
)
def test_the_strategy_cannot_change_once_groups_are_formed(admin_client, changes):
    cohort = formed(CohortFactory(), ["timezone_experience"])

    response = admin_client.post(reverse("admin:cohorts_cohort_change", args=[cohort.pk]), change_form_of(cohort, **changes))

    assert response.status_code == 200
    assert "This round's groups are formed already (time zone and experience): how they are formed can no longer change" in " ".join(
        field_errors(response)["group_strategy"]
    )
    cohort.refresh_from_db()
    assert cohort.group_strategy == "timezone_experience"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_strategy_change_saved_while_the_groups_are_being_formed_waits_for_them_and_is_refused(admin_user):
    cohort = CohortFactory(group_strategy="timezone_experience")
    forming = threading.Event()
    responses = []

    def form_groups():
        with transaction.atomic():
            cohort_lock(cohort.pk)  # as a formation does (signups.groups.cohort_groups_form)
            forming.set()
            formed(cohort, ["timezone_experience"])
            lock_waiter_wait()  # the organizer's save has reached the lock: only now are the groups committed

    def change_the_strategy():
        assert forming.wait(timeout=10)
        client = Client()
        client.force_login(admin_user)
        responses.append(client.post(reverse("admin:cohorts_cohort_change", args=[cohort.pk]), change_form_of(cohort, group_strategy="random")))

    assert in_threads(form_groups, change_the_strategy) == []

    [response] = responses
    assert response.status_code == 200
    assert "formed already (time zone and experience)" in " ".join(field_errors(response)["group_strategy"])
    cohort.refresh_from_db()
    assert cohort.group_strategy == "timezone_experience"


def test_an_experiments_strategies_cannot_change_once_groups_are_formed_not_even_their_order(admin_client):
    cohort = CohortFactory(group_strategy="experiment", experiment_strategies=["timezone", "random"])
    formed(cohort, ["timezone", "random"])

    response = admin_client.post(
        reverse("admin:cohorts_cohort_change", args=[cohort.pk]), change_form_of(cohort, **experiment("random", "timezone"))
    )

    assert "formed already (experiment: two strategies compared between time zone only and random (the 2013 baseline))" in " ".join(
        field_errors(response)["experiment_strategies"]
    )
    cohort.refresh_from_db()
    assert cohort.experiment_strategies == ["timezone", "random"]


def test_other_settings_still_change_once_groups_are_formed_and_the_seed_is_shown(admin_client):
    cohort = CohortFactory(group_strategy="experiment", experiment_strategies=["timezone", "random"])
    formed(cohort, ["timezone", "random"], seed=271828)

    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[cohort.pk])).content.decode()
    assert "271828" in page and 'name="experiment_seed"' not in page  # shown, not editable

    response = admin_client.post(
        reverse("admin:cohorts_cohort_change", args=[cohort.pk]),
        change_form_of(cohort, name="Renamed", **experiment("timezone", "random")),
    )

    assert response.status_code == 302, field_errors(response)
    cohort.refresh_from_db()
    assert (cohort.name, cohort.experiment_seed, cohort.experiment_strategies) == ("Renamed", 271828, ["timezone", "random"])


def test_the_strategy_is_read_only_for_those_who_may_not_form_groups(client):
    user = User.objects.create_user("editor", "editor@staff.example", "a long passphrase", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_cohort", "change_cohort"]))
    client.force_login(user)
    cohort = CohortFactory()

    page = client.get(reverse("admin:cohorts_cohort_change", args=[cohort.pk])).content.decode()
    assert 'name="group_strategy"' not in page and "Time zone and experience" in page

    response = client.post(
        reverse("admin:cohorts_cohort_change", args=[cohort.pk]), change_form_of(cohort, name="Renamed", **experiment("timezone", "random"))
    )

    assert response.status_code == 302
    cohort.refresh_from_db()
    assert (cohort.name, cohort.group_strategy, cohort.experiment_strategies) == ("Renamed", "timezone_experience", [])


def test_the_next_round_runs_the_same_experiment_with_a_seed_of_its_own(admin_client, clock):
    cohort = CohortFactory(group_strategy="experiment", experiment_strategies=["timezone", "random"])
    formed(cohort, ["timezone", "random"])

    admin_client.post(
        reverse("admin:cohorts_cohort_changelist"),
        {"action": "start_next_round", ACTION_CHECKBOX_NAME: [cohort.pk], "apply": "1", "weeks_later": 4, "previewed": "4"},
    )

    new = Cohort.objects.exclude(pk=cohort.pk).get()
    assert (new.group_strategy, new.experiment_strategies, new.experiment_seed) == ("experiment", ["timezone", "random"], None)
