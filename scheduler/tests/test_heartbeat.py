"""The heartbeats: beat queues one on each worker queue every minute, that queue's worker records
it, /healthz and the admin report their ages."""

import datetime

import pytest

from mooc.celery import app as celery_app
from mooc.testing.fixtures import wait_for
from scheduler.models import Heartbeat
from scheduler.selectors import workers_status
from scheduler.services import heartbeat_record
from scheduler.tasks import heartbeat
from scheduler.tests.helpers import workers_report_in

NOON = datetime.datetime(2026, 11, 21, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.django_db
def test_recording_twice_keeps_one_row_with_the_latest_time():
    heartbeat_record(now=NOON, queue="celery")
    heartbeat_record(now=NOON + datetime.timedelta(minutes=1), queue="celery")

    assert Heartbeat.objects.count() == 1
    assert Heartbeat.objects.get().seen_at == NOON + datetime.timedelta(minutes=1)


@pytest.mark.django_db
def test_status_turns_stale_after_the_configured_time(settings):
    settings.WORKER_HEARTBEAT_STALE_AFTER = 300
    heartbeat_record(now=NOON, queue="mail")

    assert workers_status(now=NOON + datetime.timedelta(seconds=300))["queues"]["mail"]["ok"] is True
    late = workers_status(now=NOON + datetime.timedelta(seconds=301))["queues"]["mail"]
    assert late == {"ok": False, "last_seen": NOON.isoformat(), "seconds_ago": 301}


@pytest.mark.django_db
def test_the_task_records_the_heartbeat_of_the_queue_it_names(clock):
    heartbeat.apply()
    heartbeat.apply(args=["mail"])
    assert {beat.name: beat.seen_at <= clock.now() for beat in Heartbeat.objects.all()} == {"worker": True, "worker-mail": True}


def test_beat_sends_each_worker_queue_a_heartbeat_of_its_own(settings):
    celery_app.loader.import_default_modules()
    entries = [entry for entry in celery_app.conf.beat_schedule.values() if entry["task"] == "scheduler.tasks.heartbeat"]
    assert "scheduler.tasks.heartbeat" in celery_app.tasks
    assert sorted((entry["options"]["queue"], *entry["args"]) for entry in entries) == [
        ("celery", "celery"), ("mail", "mail"), ("transactional", "transactional"),
    ]
    assert sorted(settings.WORKER_QUEUES) == ["celery", "mail", "transactional"]
    assert all(entry["schedule"] <= 60 for entry in entries)


def test_celery_is_configured_for_idempotent_tasks(settings):
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    # A task waiting for its longest retry must not be re-delivered by Redis meanwhile.
    assert conf.broker_transport_options["visibility_timeout"] > settings.TASK_RETRY_MAX_DELAY + conf.task_time_limit


@pytest.mark.celery_worker
def test_a_real_worker_runs_the_task_on_redis_and_writes_to_postgresql(celery_worker_queue, clock):
    heartbeat.apply_async(args=[celery_worker_queue], queue=celery_worker_queue)

    recorded = wait_for(lambda: Heartbeat.objects.filter(name=f"worker-{celery_worker_queue}").first(), timeout=60)

    assert recorded is not None, "the worker did not record the heartbeat within 60 seconds"
    assert clock.now() - recorded.seen_at < datetime.timedelta(minutes=1)


@pytest.mark.django_db
def test_the_admin_says_when_no_worker_reports_in(admin_client, clock, settings):
    from django.urls import reverse

    from cohorts.tests.factories import CohortFactory

    cohort = CohortFactory()
    pages = [reverse("admin:index"), reverse("admin:cohorts_cohort_change", args=[cohort.pk])]
    for url in pages:
        assert "No worker has ever reported in: nothing is sent" in admin_client.get(url).content.decode()

    workers_report_in(clock.now())
    for url in pages:
        assert 'id="worker-banner"' not in admin_client.get(url).content.decode()

    clock.move_to(clock.now() + datetime.timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_AFTER + 60))
    assert "No worker has reported in for 6 minutes" in admin_client.get(pages[1]).content.decode()


@pytest.mark.django_db
def test_the_admin_names_the_queue_whose_worker_is_silent(admin_client, clock, settings):
    from django.urls import reverse

    heartbeat_record(now=clock.now() - datetime.timedelta(minutes=20), queue="mail")
    heartbeat_record(now=clock.now(), queue="celery")  # the jobs run; the transactional worker never did

    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "The worker of the “mail” queue has not reported in for 20 minutes" in page
    assert "the weekly emails and group messages wait until it does" in page
    assert "The worker of the “transactional” queue has never reported in: confirmations, manage links and test sends wait" in page
    assert "no job runs" not in page


@pytest.mark.django_db
def test_sending_is_promised_within_a_minute_only_while_a_worker_runs(clock):
    from scheduler.selectors import sending_when

    assert sending_when(clock.now()).startswith("once the workers run")
    workers_report_in(clock.now())
    assert sending_when(clock.now()) == "within a minute"
