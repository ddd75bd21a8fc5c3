"""Organizers import learners from CSV: in admin (preview, then import) and with a command."""

import textwrap
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from signups.imports import ImportFileError, learners_import
from signups.models import Enrollment, Learner, LearnerEmail
from signups.services import learner_unsubscribe
from signups.tests.factories import EnrollmentFactory, LearnerFactory

pytestmark = pytest.mark.django_db

CSV = textwrap.dedent(
    """\
    email,first_name,timezone,experience,wants_group
    ada@example.org,Ada,Europe/London,some,yes
    GRACE@example.org ,Grace,America/New_York,none,
    not-an-email,Bob,UTC,none,yes
    alan@example.org,Alan,Mars/Base,some,yes
    joan@example.org,Joan,Europe/Paris,guru,no
    ada@example.org,Ada again,Europe/London,some,yes
    linus@example.org,Linus,Europe/Helsinki,experienced,perhaps
    """
)


def test_rows_are_added_or_refused_with_their_row_number_and_reason(next_cohort, clock):
    report = learners_import(next_cohort, CSV, confirmed=False, now=clock.now())

    assert (report.added, report.updated) == (2, 0)
    assert report.refused == [
        (4, "not-an-email", "not a valid email address"),
        (5, "alan@example.org", "'Mars/Base' is not a time zone (use an IANA name like Europe/Lisbon)"),
        (6, "joan@example.org", "experience must be one of none, some, experienced, not 'guru'"),
        (7, "ada@example.org", "the same address is on row 2"),
        (8, "linus@example.org", "wants_group must be yes or no, not 'perhaps'"),
    ]
    assert sorted(Learner.objects.values_list("email", flat=True)) == ["ada@example.org", "grace@example.org"]
    # Not confirmed: each gets a confirmation link, and nothing else until they click it.
    assert set(Enrollment.objects.values_list("status", flat=True)) == {"pending"}
    assert sorted(message.to[0] for message in mail.outbox) == ["ada@example.org", "grace@example.org"]


def test_a_file_marked_confirmed_needs_no_confirmation(next_cohort, clock):
    report = learners_import(next_cohort, CSV, confirmed=True, now=clock.now())

    assert report.added == 2
    assert set(Enrollment.objects.values_list("status", flat=True)) == {"active"}
    assert all(learner.is_confirmed for learner in Learner.objects.all())
    assert not mail.outbox


def test_a_dry_run_reports_the_same_and_saves_nothing(next_cohort, clock):
    preview = learners_import(next_cohort, CSV, confirmed=False, now=clock.now(), dry_run=True)
    real = learners_import(next_cohort, CSV, confirmed=False, now=clock.now())

    assert (preview.added, preview.updated, preview.refused) == (real.added, real.updated, real.refused)
    assert len(mail.outbox) == 2  # only from the real run


def test_existing_learners_are_updated_and_nobody_who_left_is_put_back(next_cohort, later_cohort, clock):
    EnrollmentFactory(cohort=next_cohort, learner__email="ada@example.org", learner__first_name="A.")
    EnrollmentFactory(cohort=later_cohort, learner__email="grace@example.org")
    left = LearnerFactory(email="alan@example.org")
    EnrollmentFactory(learner=left, cohort=next_cohort, status="left")
    unsubscribed = LearnerFactory(email="joan@example.org")
    learner_unsubscribe(unsubscribed, now=clock.now())
    csv_text = "email,timezone,experience,first_name\n" + "\n".join(
        f"{email},UTC,some,{name}" for email, name in
        [("ada@example.org", "Ada"), ("grace@example.org", "Grace"), ("alan@example.org", "Alan"), ("joan@example.org", "Joan")]
    )

    report = learners_import(next_cohort, csv_text, confirmed=True, now=clock.now())

    assert (report.added, report.updated) == (0, 2)
    assert Learner.objects.get(email="ada@example.org").first_name == "Ada"
    assert report.refused == [
        (3, "grace@example.org", "already enrolled in Round 3: use the admin action 'move to cohort' instead"),
        (5, "joan@example.org", "this address unsubscribed or deleted its data: only its owner can sign up again"),
    ]
    # Alan left once: the organizer's "confirmed" does not speak for him; he must confirm himself.
    assert left.enrollments.get(status="pending").cohort == next_cohort
    assert [message.to for message in mail.outbox] == [["alan@example.org"]]


def test_a_file_without_the_required_columns_is_refused_whole(next_cohort, clock):
    with pytest.raises(ImportFileError, match="missing: experience, timezone"):
        learners_import(next_cohort, "email,first_name\na@example.org,A\n", confirmed=False, now=clock.now())


def test_the_command_prints_what_it_did_with_its_progress(next_cohort, tmp_path, settings):
    settings.LEARNER_IMPORT_BATCH_SIZE = 3
    csv_file = tmp_path / "learners.csv"
    csv_file.write_text(CSV)
    output, progress = StringIO(), StringIO()

    call_command("import_learners", next_cohort.slug, str(csv_file), "--confirmed", stdout=output, stderr=progress)

    lines = output.getvalue().splitlines()
    assert lines[0] == "2 added, 0 updated, 5 refused."
    assert "  row 4 (not-an-email): not a valid email address" in lines
    assert Learner.objects.count() == 2
    # tqdm's bar on stderr, redrawn after each batch (of 3 rows) on one line, at most ten times a second.
    bar = progress.getvalue()
    assert bar.startswith("\rImporting:   0%|") and bar.count("\n") == 1
    assert "| 7/7 [" in bar and "row/s, added=2, updated=0, refused=5]" in bar


def test_the_command_refuses_a_nul_byte_in_its_row_and_goes_on(next_cohort, tmp_path):
    csv_file = tmp_path / "learners.csv"
    csv_file.write_bytes(b"email,timezone,experience\nada@example.org,UTC,none\nnul@example.org,UT\x00C,none\ngrace@example.org,UTC,none\n")
    output = StringIO()

    call_command("import_learners", next_cohort.slug, str(csv_file), stdout=output, stderr=StringIO(), verbosity=0)

    assert output.getvalue().splitlines() == [
        "2 added, 0 updated, 1 refused.",
        "  row 3 (nul@example.org): the timezone column contains a NUL byte (U+0000): remove it",
    ]
    assert sorted(Learner.objects.values_list("email", flat=True)) == ["ada@example.org", "grace@example.org"]


def test_the_command_dry_run_saves_nothing(next_cohort, tmp_path):
    csv_file = tmp_path / "learners.csv"
    csv_file.write_text(CSV)
    output, progress = StringIO(), StringIO()

    call_command("import_learners", next_cohort.slug, str(csv_file), "--dry-run", stdout=output, stderr=progress)

    assert output.getvalue().splitlines()[0] == "Dry run, nothing saved: 2 added, 0 updated, 5 refused."
    assert "Checking" in progress.getvalue()
    assert not Learner.objects.exists() and not mail.outbox


def test_the_command_names_a_wrong_cohort_or_file(next_cohort, tmp_path, settings):
    with pytest.raises(CommandError, match="no cohort with the slug 'nope'"):
        call_command("import_learners", "nope", str(tmp_path / "x.csv"))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_learners", next_cohort.slug, str(tmp_path / "missing.csv"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("email,timezone,experience\nzoë@example.org,UTC,none\n".encode("latin-1"))
    with pytest.raises(CommandError, match="latin.csv: The file is not UTF-8 text"):
        call_command("import_learners", next_cohort.slug, str(latin))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(CommandError, match="The file is empty"):
        call_command("import_learners", next_cohort.slug, str(empty))
    settings.LEARNER_IMPORT_MAX_BYTES = 10
    with pytest.raises(CommandError, match="the largest accepted is 10 bytes"):
        call_command("import_learners", next_cohort.slug, str(latin))


@pytest.mark.parametrize(
    "field, shown, reason",
    [
        ("ada@exam\x00ple.org", "ada@exam\\x00ple.org", "the email column contains a NUL byte (U+0000): remove it"),
        ("ada@exa\rmple.org", "ada@exa\\x0dmple.org", "the email column contains a control character (U+000D): remove it"),
        ("ada@example.org\x1b", "ada@example.org\\x1b", "the email column contains a control character (U+001B): remove it"),
        ("ada@exa\x85mple.org", "ada@exa\\x85mple.org", "the email column contains a control character (U+0085): remove it"),
    ],
    ids=["NUL", "CR", "ESC", "NEL"],
)
def test_a_control_character_refuses_its_row_with_its_number(next_cohort, clock, field, shown, reason):
    text = f'email,timezone,experience\ngrace@example.org,UTC,none\n"{field}",UTC,none\nalan@example.org,UTC,none\n'

    report = learners_import(next_cohort, text, confirmed=True, now=clock.now())

    assert report.refused == [(3, shown, reason)]
    assert report.added == 2


def test_a_tab_is_no_control_character_and_blank_rows_are_no_rows(next_cohort, clock):
    text = "email,first_name,timezone,experience\n\nada@example.org,\tAda\t,UTC,none\n,,,\n\ngrace@example.org,Grace,UTC,none\n"

    report = learners_import(next_cohort, text, confirmed=True, now=clock.now())

    assert (report.rows, report.added, report.refused) == (2, 2, [])
    assert Learner.objects.get(email="ada@example.org").first_name == "Ada"


def test_a_reason_quotes_a_runaway_cell_cut_short(next_cohort, clock):
    text = "email,timezone,experience\nada@example.org,UTC," + "x" * 5000 + "\n"

    [(_, _, reason)] = learners_import(next_cohort, text, confirmed=True, now=clock.now(), dry_run=True).refused

    assert reason == "experience must be one of none, some, experienced, not '" + "x" * 40 + "…'"


def test_a_row_that_is_not_valid_csv_is_refused_alone(next_cohort, clock):
    huge = "x" * 200_000
    text = f'email,timezone,experience\nada@example.org,UTC,none\n"{huge}",UTC,none\ngrace@example.org,UTC,none\n'

    report = learners_import(next_cohort, text, confirmed=True, now=clock.now())

    assert report.refused == [(3, "", "the row is not valid CSV: field larger than field limit (131072)")]
    assert report.added == 2


def test_each_batch_costs_a_fixed_number_of_queries_whatever_its_size(next_cohort, clock, settings, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from signups import emails
    from signups.tasks import learner_email_send

    def rows(start, count):
        return "email,timezone,experience\n" + "".join(f"l{n}@example.org,UTC,none\n" for n in range(start, start + count))

    queued = []  # the workers' part is not the import's: held back, and run after the count
    monkeypatch.setattr(emails, "learner_email_enqueue", queued.append)
    settings.LEARNER_IMPORT_BATCH_SIZE = 50  # one insert for each table, within SQLite's 999 parameters
    with CaptureQueriesContext(connection) as ten:
        learners_import(next_cohort, rows(0, 10), confirmed=False, now=clock.now())
    with CaptureQueriesContext(connection) as fifty:
        learners_import(next_cohort, rows(100, 50), confirmed=False, now=clock.now())
    settings.LEARNER_IMPORT_BATCH_SIZE = 40
    with CaptureQueriesContext(connection) as three_batches:
        learners_import(next_cohort, rows(200, 120), confirmed=False, now=clock.now())

    # Per batch: the savepoint and its release, the learners (locked; and their enrollments, when
    # some are known), the suppressions, the new learners' insert, the cohort's lock, whether it
    # has groups, the enrollments' insert. Each confirmation put in the outbox (a delete of any
    # still waiting, an insert) is the outbox's, counted apart.
    def import_queries(captured):
        return [query for query in captured.captured_queries if LearnerEmail._meta.db_table not in query["sql"]]

    assert len(import_queries(ten)) == len(import_queries(fifty)) == 8, [query["sql"] for query in import_queries(ten)]
    assert len(import_queries(three_batches)) == 3 * 8
    for email_id in queued:
        learner_email_send.delay(email_id)
    assert len(mail.outbox) == 180
    assert Enrollment.objects.filter(cohort=next_cohort).count() == 180


def test_existing_learners_are_updated_in_bulk(next_cohort, clock):
    for n in range(20):
        EnrollmentFactory(cohort=next_cohort, status="pending", learner__email=f"old{n}@example.org", learner__confirmed_at=None)
    text = "email,first_name,timezone,experience,wants_group\n" + "".join(f"old{n}@example.org,Old {n},Asia/Tokyo,experienced,no\n" for n in range(20))

    now = clock.now()
    report = learners_import(next_cohort, text, confirmed=True, now=now)

    assert (report.added, report.updated) == (0, 20)
    learner = Learner.objects.get(email="old7@example.org")
    assert (learner.first_name, learner.timezone, learner.experience, learner.is_confirmed) == ("Old 7", "Asia/Tokyo", "experienced", True)
    enrollment = learner.enrollments.get()
    assert (enrollment.status, enrollment.wants_group, enrollment.mailable_since) == ("active", False, now)


def test_a_full_cohort_takes_rows_in_order_until_its_last_seat_across_batches(next_cohort, clock, settings):
    settings.LEARNER_IMPORT_BATCH_SIZE = 2
    next_cohort.capacity = 4
    next_cohort.save()
    EnrollmentFactory(cohort=next_cohort)
    text = "email,timezone,experience\n" + "".join(f"l{n}@example.org,UTC,none\n" for n in range(5))

    preview = learners_import(next_cohort, text, confirmed=True, now=clock.now(), dry_run=True)
    report = learners_import(next_cohort, text, confirmed=True, now=clock.now())

    full = "Round 2 is full (capacity 4)"
    assert [(n, reason) for n, _, reason in report.refused] == [(5, full), (6, full)]
    assert (preview.added, preview.refused) == (report.added, report.refused)
    assert sorted(Learner.objects.values_list("email", flat=True))[:3] == ["l0@example.org", "l1@example.org", "l2@example.org"]
    assert not Learner.objects.filter(email__in=["l3@example.org", "l4@example.org"]).exists()  # no learner without a seat
