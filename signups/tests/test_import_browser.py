"""An organizer imports learners in a real browser: upload, the page following the worker, Apply."""

import pytest
from django.contrib.auth.models import Group
from django.db import transaction

from cohorts.services import cohort_lock
from mooc.permissions import ORGANIZER
from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from signups.models import Enrollment, LearnerImport

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"


def log_in(page, live_server, django_user_model, next_path="/admin/signups/learner/import/"):
    organizer = django_user_model.objects.create_user("organizer", "organizer@staff.example", PASSWORD, is_staff=True)
    organizer.groups.add(Group.objects.get(name=ORGANIZER))
    page.goto(f"{live_server.url}/admin/login/?next={next_path}")
    page.get_by_label("Username").fill("organizer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def learners_csv(tmp_path, count: int):
    path = tmp_path / "autumn-learners.csv"
    lines = ["email,first_name,timezone,experience,wants_group"]
    lines += [f"learner{n}@example.org,Learner {n},Europe/Lisbon,some,yes" for n in range(count)]
    lines += ["not-an-address,Nobody,UTC,none,yes", "learner7@example.org,Again,UTC,none,yes"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.celery_worker
@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_upload_preview_and_apply_with_a_real_worker(width, page_at, live_server, django_user_model, celery_workers, next_cohort, settings, tmp_path, monkeypatch):
    """A real `celery worker` process (Redis, PostgreSQL) runs the preview and the apply; the page
    follows them by itself (static/js/job_progress.js) at a phone's width and a laptop's."""
    queue = f"test-imports-{width}"
    celery_workers(queue, LEARNER_IMPORT_BATCH_SIZE="50", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    settings.DELIVERY_QUEUE = queue  # where the admin queues the import's tasks
    page = page_at(width)
    violations = csp_violations(page)
    log_in(page, live_server, django_user_model)

    page.get_by_label("Cohort").select_option(label=str(next_cohort))
    page.get_by_label("CSV file").set_input_files(learners_csv(tmp_path, 300))
    page.get_by_label("These addresses have already opted in", exact=False).check()
    page.get_by_role("button", name="Upload and preview").click()

    # The counts appear as the worker checks the rows: no reload by hand.
    page.get_by_role("heading", name="Preview: Preview ready").wait_for(timeout=60_000)
    assert page.locator("#job-rows-done").inner_text() == "302"
    assert page.locator("#job-added").inner_text() == "300"
    assert page.locator("#job-refused").inner_text() == "2"
    assert page.get_by_role("cell", name="the same address is on row 9").is_visible()
    assert fits_width(page)
    assert not Enrollment.objects.exists()

    # Hold the cohort's lock: the apply's first batch waits for it, and the page shows it under way.
    with transaction.atomic():
        cohort_lock(next_cohort.pk)
        page.get_by_role("button", name="Apply: import 300 learners").click()
        page.get_by_role("heading", name="Import: Importing").wait_for()
        assert page.locator("#job-progress").get_attribute("data-running") == "true"
        assert fits_width(page)
    page.get_by_role("heading", name="Import: Imported").wait_for(timeout=60_000)
    assert page.locator("#job-added").inner_text() == "300"
    assert page.locator("#job-refused").inner_text() == "2"
    assert page.locator("#job-progress").get_attribute("data-running") == "false"
    assert fits_width(page)
    assert violations == []

    job = LearnerImport.objects.get()
    assert (job.status, job.rows_done, job.added, job.refused) == ("applied", 302, 300, 2)
    assert Enrollment.objects.filter(cohort=next_cohort, status="active").count() == 300


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_progress_page_follows_the_job_and_fits_a_phone_and_a_laptop(width, page_at, live_server, django_user_model, next_cohort, clock):
    """The worker is the test here: it writes the job's progress while the page is open."""
    job = LearnerImport.objects.create(
        cohort=next_cohort, file_name="a-rather-long-file-name-for-a-small-screen-2026-autumn.csv", file_size=2_600_000,
        content=b"", confirmed=False, status="previewing", rows_total=50_000, rows_done=12_000, added=11_900, refused=100,
        refusals=[[n, f"a.rather.long.address.number.{n}@a-long-domain-name.example.org", "the same address is on row 2"] for n in range(3, 103)],
        progress_at=clock.now(),
    )
    page = page_at(width)
    violations = csp_violations(page)
    log_in(page, live_server, django_user_model, next_path=f"/admin/signups/learner/import/{job.pk}/")

    page.get_by_role("heading", name="Preview: Checking every row").wait_for()
    assert page.locator("#job-rows-done").inner_text() == "12,000"
    assert fits_width(page)

    LearnerImport.objects.filter(pk=job.pk).update(rows_done=30_000, added=29_000, progress_at=clock.now())
    page.locator("#job-rows-done").get_by_text("30,000").wait_for()
    LearnerImport.objects.filter(pk=job.pk).update(status="previewed", rows_done=50_000, added=49_900, progress_at=clock.now())
    page.get_by_role("button", name="Apply: import 49,900 learners").wait_for()
    assert page.locator("#job-progress").get_attribute("data-running") == "false"
    assert fits_width(page)
    assert violations == []
