"""Organizers' side of signups: find learners, act on many at once, import a CSV file."""

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, OuterRef, Q, Subquery
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from cohorts.admin import CohortAdmin, CohortPageSection, CourseAdmin, StudyGroupAdmin, action_form_response
from cohorts.models import Cohort, GroupStrategy
from cohorts.selectors import cohort_groups_have_place_to_talk
from mooc.admin_paging import EstimatedCountPaginator
from mooc.permissions import ActionPermissionsMixin, admin_action
from signups import bulk_actions, services
from signups.emails import learner_emails_send_again
from signups.group_checkins import QUIET_CHECKIN_SHARE, groups_checkins, judged_weeks
from signups.groups import (
    ExperimentNotSet, GroupsExist, NoLearnersToGroup, cohort_groups_form, cohort_groups_quality, cohort_groups_reform,
    formation_quality_problem, groups_without_place_to_talk_warning,
)
from signups.import_jobs import (
    learner_import_apply_request, learner_import_is_stalled, learner_import_resume, learner_import_start,
)
from signups.imports import ImportFileError, import_file_size_check
from signups.models import Enrollment, Erasure, Learner, LearnerBulkAction, LearnerEmail, LearnerImport, Suppression
from signups.selectors import (
    cohort_enrollment_counts, cohort_member_counts, cohort_members_overview, courses_with_waitlist_size,
    learner_bulk_action_for_page, learner_ids_with_email, learner_import_for_page, learner_imports_recent,
)
from signups.suppressions import RestartRefused, learner_mail_restart, learner_mail_restart_problem


class LearnerStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("pending", "Waiting for confirmation"),
            ("active", "Active in a cohort"),
            ("waitlisted", "On a waitlist"),
            ("paused", "Emails paused"),
            ("left", "Left"),
            ("unsubscribed", "Unsubscribed"),
        ]

    def queryset(self, request, queryset):
        subscribed = queryset.filter(unsubscribed_at__isnull=True)
        current = Q(enrollments__status__in=Enrollment.CURRENT)
        match self.value():
            case "pending":
                return subscribed.filter(confirmed_at__isnull=True)
            case "active":
                return subscribed.filter(
                    confirmed_at__isnull=False, enrollments__status=Enrollment.Status.ACTIVE, enrollments__cohort__isnull=False
                ).distinct()
            case "waitlisted":
                return subscribed.filter(current, enrollments__cohort__isnull=True).distinct()
            case "paused":
                return subscribed.filter(enrollments__status=Enrollment.Status.PAUSED).distinct()
            case "left":
                return subscribed.filter(confirmed_at__isnull=False).exclude(current)
            case "unsubscribed":
                return queryset.filter(unsubscribed_at__isnull=False)
        return queryset


class MailStoppedFilter(admin.SimpleListFilter):
    """Why mail to a learner stopped; and those who fixed their address since, for whom an
    organizer may restart it (learner_mail_restart_problem)."""

    title = "mail stopped because"
    parameter_name = "stopped"
    FIXED = "fixed"

    def lookups(self, request, model_admin):
        reasons = [(reason.value, reason.label) for reason in Suppression.Reason if reason != Suppression.Reason.ERASED]
        return [*reasons, (self.FIXED, "Address fixed: mail may be restarted")]

    def queryset(self, request, queryset):
        if self.value() == self.FIXED:
            return queryset.filter(
                unsubscribed_at__isnull=False, unsubscribed_reason__in=Suppression.LIFTABLE,
                address_fixed_at__gte=F("unsubscribed_at"),
            )
        if self.value():
            return queryset.filter(unsubscribed_at__isnull=False, unsubscribed_reason=self.value())
        return queryset


class CurrentCohortFilter(admin.SimpleListFilter):
    title = "current cohort"
    parameter_name = "cohort"

    def lookups(self, request, model_admin):
        return [(cohort.slug, str(cohort)) for cohort in Cohort.objects.select_related("course")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(
                enrollments__cohort__slug=self.value(), enrollments__status__in=Enrollment.CURRENT
            ).distinct()
        return queryset


class EnrollmentInCohortFilter(admin.SimpleListFilter):
    """Learners with an enrollment of one status in one cohort ("<cohort slug>:<status>"): where the
    counts on a cohort's page lead. Offers only the choice in force (the cohort page makes it)."""

    title = "enrollment in a cohort"
    parameter_name = "enrollment"

    def lookups(self, request, model_admin):
        slug, _, status = (self.value() or "").partition(":")
        if not slug or status not in Enrollment.Status.values:
            return []
        cohort = Cohort.objects.select_related("course").filter(slug=slug).first()
        return [(self.value(), f"{cohort or slug}: {Enrollment.Status(status).label.lower()}")]

    def has_output(self):
        return True  # its one choice appears only when chosen, yet it must always filter

    def queryset(self, request, queryset):
        slug, _, status = (self.value() or "").partition(":")
        if slug and status:
            return queryset.filter(enrollments__cohort__slug=slug, enrollments__status=status).distinct()
        return queryset


def _utc(moment) -> str:
    """A moment in the learner list, in UTC, which the column's title names."""
    return f"{moment.astimezone(datetime.UTC):%-d %b %Y %H:%M}" if moment else "-"


def learners_in_cohort_url(cohort, status: str) -> str:
    """The learner list, filtered to those with an enrollment of `status` in `cohort`."""
    return reverse("admin:signups_learner_changelist") + "?" + urlencode({EnrollmentInCohortFilter.parameter_name: f"{cohort.slug}:{status}"})


class EnrollmentInline(admin.TabularInline):
    model = Enrollment
    extra = 0
    fields = ["course", "cohort", "status", "wants_group", "created_at", "ended_at"]
    readonly_fields = fields  # changed through the actions and the learner's own page, which keep the rules
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


class MoveToCohortForm(forms.Form):
    cohort = forms.ModelChoiceField(queryset=Cohort.objects.select_related("course").order_by("-start_date"))


class LearnerImportForm(forms.Form):
    cohort = forms.ModelChoiceField(queryset=Cohort.objects.select_related("course").order_by("-start_date"))
    csv_file = forms.FileField(
        label="CSV file",
        help_text="Columns (header row): email, first_name, timezone, experience, wants_group. UTF-8.",
    )
    confirmed = forms.BooleanField(
        required=False,
        label="These addresses have already opted in: do not ask them to confirm",
        help_text="Only addresses new to us, or still unconfirmed, are taken as confirmed.",
    )

    def clean_csv_file(self):
        upload = self.cleaned_data["csv_file"]
        try:
            import_file_size_check(upload.size)  # before the file is read
        except ImportFileError as error:
            raise forms.ValidationError(str(error)) from None
        return upload


@dataclass
class LearnerPageSection:
    """A part of the learner's admin page that another app contributes (the scheduler: what the
    learner's weekly emails did). signups imports no app that uses it, so they register here.

    `context(learner, user)` returns the template's context, or None to leave the section out
    for this `user` (each section shows only what their permissions allow).
    """

    title: str
    template: str
    context: Callable


@admin.register(Learner)
class LearnerAdmin(ActionPermissionsMixin, admin.ModelAdmin):
    list_display = [
        "email", "first_name", "timezone", "experience", "current_cohort", "current_status", "signed_up", "confirmed",
        "unsubscribed", "mail_stopped",
    ]
    list_filter = [
        LearnerStatusFilter, MailStoppedFilter, CurrentCohortFilter, EnrollmentInCohortFilter,
        ("timezone", admin.AllValuesFieldListFilter), "experience",
    ]
    search_fields = ["email", "first_name"]
    readonly_fields = [
        "email", "public_id", "confirmed_at", "confirmation_sent_at", "unsubscribed_at", "mail_stopped", "address_fixed_at",
        "created_at", "updated_at",
    ]
    fields = ["email", "first_name", "timezone", "experience", *readonly_fields[1:]]
    inlines = [EnrollmentInline]
    actions = ["resend_confirmation", "move_to_cohort", "unsubscribe", "restart_mail"]
    change_list_template = "admin/signups/learner/change_list.html"
    change_form_template = "admin/signups/learner/change_form.html"
    # Filled by other apps at start-up (see LearnerPageSection); class-level on purpose.
    page_sections: list[LearnerPageSection] = []

    def get_queryset(self, request):
        current = Enrollment.objects.filter(learner=OuterRef("pk"), status__in=Enrollment.CURRENT).order_by("-created_at")
        return (
            super()
            .get_queryset(request)
            .annotate(
                current_cohort_name=Subquery(current.values("cohort__name")[:1]),
                current_status_value=Subquery(current.values("status")[:1]),
            )
        )

    @admin.display(description="current cohort", ordering="current_cohort_name")
    def current_cohort(self, learner):
        if learner.current_status_value is None:
            return "-"
        return learner.current_cohort_name or "waitlist"

    @admin.display(description="enrollment", ordering="current_status_value")
    def current_status(self, learner):
        return Enrollment.Status(learner.current_status_value).label if learner.current_status_value else "-"

    @admin.display(description="signed up (UTC)", ordering="created_at")
    def signed_up(self, learner):
        return _utc(learner.created_at)

    @admin.display(description="confirmed (UTC)", ordering="confirmed_at")
    def confirmed(self, learner):
        return _utc(learner.confirmed_at)

    @admin.display(description="unsubscribed (UTC)", ordering="unsubscribed_at")
    def unsubscribed(self, learner):
        return _utc(learner.unsubscribed_at)

    @admin.display(description="mail stopped because", ordering="unsubscribed_reason")
    def mail_stopped(self, learner):
        if learner.unsubscribed_at is None:
            return "-"
        reason = learner.unsubscribed_reason
        return Suppression.Reason(reason).label if reason in Suppression.Reason.values else "Unsubscribed"

    def has_add_permission(self, request):
        return False  # learners sign up themselves, or arrive through the import

    def change_view(self, request, object_id, form_url="", extra_context=None):
        learner = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if learner is not None:
            extra_context["restart_mail"] = {
                "shown": learner.unsubscribed_at is not None and request.user.has_perm("signups.lift_suppression"),
                "problem": learner_mail_restart_problem(learner),
            }
            extra_context["learner_sections"] = [
                {"title": section.title, "template": section.template, **context}
                for section in self.page_sections
                if (context := section.context(learner, request.user)) is not None
            ]
        return super().change_view(request, object_id, form_url, extra_context)

    def restart_mail_view(self, request, learner_id):
        """The change page's "Restart mail" button: the action, for one learner."""
        if not request.user.has_perm("signups.lift_suppression"):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        learner = Learner.objects.filter(pk=learner_id).first()
        if learner is None:
            raise Http404
        self._restart_mail(request, [learner])
        return redirect("admin:signups_learner_change", learner.pk)

    # Their recent emails from the outbox, for those who may read it.
    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return [*fields, "recent_emails"] if obj and request.user.has_perm("signups.view_learneremail") else fields

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        return [*readonly, "recent_emails"] if obj and request.user.has_perm("signups.view_learneremail") else readonly

    @admin.display(description="recent emails")
    def recent_emails(self, learner):
        emails = list(learner.emails.order_by("-created_at")[:RECENT_EMAILS])
        if not emails:
            return "None."
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    timezone.localtime(email.created_at).strftime("%Y-%m-%d %H:%M"), email.template, email.get_status_display(),
                    email.attempts, timezone.localtime(email.sent_at).strftime("%Y-%m-%d %H:%M") if email.sent_at else "-",
                    Truncator(email.last_error).chars(120) or "-",
                )
                for email in emails
            ),
        )
        every = reverse("admin:signups_learneremail_changelist") + f"?learner__id__exact={learner.pk}"
        return format_html(
            "<table><thead><tr><th>queued</th><th>email</th><th>status</th><th>attempts</th><th>sent</th><th>last error</th></tr>"
            '</thead><tbody>{}</tbody></table><p><a href="{}">All of this learner\'s emails</a></p>',
            rows, every,
        )

    @admin_action(permission="signups.resend_confirmation", description="Re-send the confirmation email")
    def resend_confirmation(self, request, queryset):
        if self._queued_when_many(request, queryset, LearnerBulkAction.Kind.RESEND_CONFIRMATION):
            return
        sent = services.learners_confirmation_resend(queryset, now=timezone.now())
        skipped = queryset.count() - sent
        self.message_user(
            request,
            f"Queued {sent} confirmation email{'s' if sent != 1 else ''} for sending; skipped {skipped} "
            "(already confirmed, unsubscribed, or mailed in the last 10 minutes).",
        )

    @admin_action(permission="signups.move_learner", description="Move to another cohort…")
    def move_to_cohort(self, request, queryset):
        form = MoveToCohortForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            cohort = form.cleaned_data["cohort"]
            if self._queued_when_many(request, queryset, LearnerBulkAction.Kind.MOVE, cohort=cohort):
                return None
            report = services.learners_move_to_cohort(queryset, cohort, now=timezone.now())
            self.message_user(
                request,
                f"Moved {report.moved} learner{'s' if report.moved != 1 else ''} to {cohort}; skipped {report.skipped} "
                "(no current enrollment in that course, or already there).",
            )
            if report.full:
                self.message_user(
                    request, f"{report.full} not moved: {cohort} is full (capacity {cohort.capacity}).", messages.WARNING
                )
            return None
        return action_form_response(
            self, request, queryset, form, action="move_to_cohort", title="Move learners to another cohort",
            intro="Each learner gets the new cohort's emails from its current week (or week 1, before it starts) and leaves their study group. "
            "Learners without a current enrollment in that course are skipped.",
            submit_label="Move them",
        )

    @admin_action(permission="signups.unsubscribe_learner", description="Unsubscribe (stop every email)")
    def unsubscribe(self, request, queryset):
        if self._queued_when_many(request, queryset, LearnerBulkAction.Kind.UNSUBSCRIBE):
            return
        now = timezone.now()
        changed = sum(services.learner_unsubscribe(learner, now=now) for learner in queryset)
        self.message_user(request, f"Unsubscribed {changed} learner{'s' if changed != 1 else ''}.")

    @admin_action(permission="signups.lift_suppression", description="Restart mail (the learner fixed their bounced address)")
    def restart_mail(self, request, queryset):
        self._restart_mail(request, queryset.only("pk", "email"))

    RESTART_REPORT_LIMIT = 50  # learners named in each part of the report

    def _restart_mail(self, request, learners) -> None:
        """Restart mail to each learner who fixed their bounced address (learner_mail_restart);
        say who was restarted and, for each of the others, why not (a complaint never is)."""
        now = timezone.now()
        restarted, refused = [], []
        for learner in learners:
            try:
                learner_mail_restart(learner.pk, now=now)
            except RestartRefused as refusal:
                refused.append((learner.email, str(refusal)))
            else:
                restarted.append(learner.email)
        limit = self.RESTART_REPORT_LIMIT
        if restarted:
            more = f" and {len(restarted) - limit} more" if len(restarted) > limit else ""
            self.message_user(
                request, f"Restarted mail to {len(restarted)} learner{'s' if len(restarted) != 1 else ''}: {', '.join(restarted[:limit])}{more}."
            )
        if refused:
            more = format_html("<li>and {} more</li>", len(refused) - limit) if len(refused) > limit else ""
            self.message_user(
                request,
                format_html(
                    "Not restarted: {} learner{}<ul>{}{}</ul>", len(refused), "s" if len(refused) != 1 else "",
                    format_html_join("", "<li>{}: {}</li>", refused[:limit]), more,
                ),
                messages.WARNING,
            )

    def _queued_when_many(self, request, queryset, kind, cohort=None) -> bool:
        """Over bulk_actions.INLINE_LIMIT learners the action is queued for a worker (a request
        that loops over thousands of learners outlives the server's timeout): say so, and where
        to follow it. False when there are few enough to do at once."""
        count = queryset.count()
        if count <= bulk_actions.INLINE_LIMIT:
            return False
        job = bulk_actions.learner_bulk_action_start(kind, queryset, cohort=cohort, user=request.user, now=timezone.now())
        self.message_user(
            request,
            format_html(
                '{} for {} learners is queued for a worker: <a href="{}">follow it on its page</a>.',
                job.get_kind_display(), f"{count:,}", reverse("admin:signups_learner_bulk_action", args=[job.pk]),
            ),
        )
        return True

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="signups_learner_import"),
            path("import/<int:import_id>/", view(self.import_job_view), name="signups_learner_import_job"),
            path("import/<int:import_id>/apply/", view(self.import_apply_view), name="signups_learner_import_apply"),
            path("import/<int:import_id>/resume/", view(self.import_resume_view), name="signups_learner_import_resume"),
            path("actions/<int:job_id>/", view(self.bulk_action_view), name="signups_learner_bulk_action"),
            path("<int:learner_id>/restart-mail/", view(self.restart_mail_view), name="signups_learner_restart_mail"),
            *super().get_urls(),
        ]

    def _import_allowed(self, request) -> None:
        if not request.user.has_perm("signups.import_learners"):
            raise PermissionDenied

    def import_view(self, request):
        """Upload a CSV file: it is stored and a worker previews it; the import's page follows it."""
        self._import_allowed(request)
        form = LearnerImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            upload = data["csv_file"]
            try:
                job = learner_import_start(
                    cohort=data["cohort"], data=upload.read(), file_name=upload.name, confirmed=data["confirmed"],
                    user=request.user, now=timezone.now(),
                )
            except ImportFileError as error:
                form.add_error("csv_file", str(error))
            else:
                return redirect("admin:signups_learner_import_job", job.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": "Import learners from a CSV file",
            "form": form,
            "imports": learner_imports_recent(),
            "max_size": f"{settings.LEARNER_IMPORT_MAX_BYTES / 1024 / 1024:.0f} MB",
            "opts": self.model._meta,
        }
        return render(request, "admin/signups/learner/import.html", context)

    def import_job_view(self, request, import_id):
        """An import's progress: the counts and refused rows so far (addresses only for those who
        may see learners), Apply once previewed, Resume when it failed or stalled."""
        self._import_allowed(request)
        job = learner_import_for_page(import_id)
        if job is None:
            raise Http404
        now = timezone.now()
        stalled = learner_import_is_stalled(job, now)
        context = {
            **self.admin_site.each_context(request),
            "title": str(job),
            "job": job,
            "applying": job.apply_started_at is not None,
            "show_addresses": request.user.has_perm("signups.view_learner"),
            "stalled": stalled,
            "can_resume": stalled or job.status == LearnerImport.Status.FAILED,
            "opts": self.model._meta,
        }
        return render(request, "admin/signups/learner/import_job.html", context)

    def import_apply_view(self, request, import_id):
        """Apply a previewed import: the stored file, by a worker; a second click changes nothing."""
        return self._import_job_post(request, import_id, learner_import_apply_request, "The import is queued.")

    def import_resume_view(self, request, import_id):
        return self._import_job_post(request, import_id, learner_import_resume, "Queued again, from where it stopped.")

    def _import_job_post(self, request, import_id, service, done_message):
        self._import_allowed(request)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = learner_import_for_page(import_id)
        if job is None:
            raise Http404
        if service(job, now=timezone.now()):
            self.message_user(request, done_message)
        return redirect("admin:signups_learner_import_job", job.pk)

    def bulk_action_view(self, request, job_id):
        """A bulk action's progress, for those who may run that action."""
        job = learner_bulk_action_for_page(job_id)
        if job is None:
            raise Http404
        if not request.user.has_perm(LearnerBulkAction.PERMISSIONS[job.kind]):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"{job.get_kind_display()}: {job.total:,} learners",
            "job": job,
            "opts": self.model._meta,
        }
        return render(request, "admin/signups/learner/bulk_action.html", context)


RECENT_EMAILS = 10  # on a learner's page


@admin.register(LearnerEmail)
class LearnerEmailAdmin(ActionPermissionsMixin, admin.ModelAdmin):
    """The outbox of learners' own emails (signups/emails.py): read-only, plus sending failed ones
    again. The address only for those who may see learners; never the context or headers, which
    hold the learner's secret links. A row per email asked for: like the ledger, counted by
    estimate, newest first on the primary key, searched exactly on indexed columns."""

    list_filter = ["status"]
    list_select_related = ["learner"]
    ordering = ["-pk"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    search_help_text = "An exact email address (if you may see learners) or an email's id."
    actions = ["send_again"]
    _TIMES = ["created_at", "queued_at", "next_attempt_at", "claimed_at", "sent_at"]

    def _may_see_learners(self, request) -> bool:
        return request.user.has_perm("signups.view_learner")

    def _recipient(self, request) -> str:
        return "learner" if self._may_see_learners(request) else "learner_ref"

    def get_list_display(self, request):
        return ["created_at", self._recipient(request), "template", "status", "attempts", "next_attempt_at", "sent_at", "error"]

    def get_search_fields(self, request):
        return ["pk"]  # the box itself; what it finds: get_search_results

    def get_search_results(self, request, queryset, search_term):
        """An exact address (for those who may see learners) or a row id: a substring search
        would scan every row."""
        term = search_term.strip()
        if "@" in term and self._may_see_learners(request):
            return queryset.filter(learner_id__in=learner_ids_with_email(term)), False
        if term.isdigit():
            return queryset.filter(pk=int(term)), False
        return (queryset.none() if term else queryset), False

    def get_fields(self, request, obj=None):
        return [self._recipient(request), "template", "status", "attempts", *self._TIMES, "last_error"]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="learner")
    def learner_ref(self, email):
        return f"learner #{email.learner_id}"

    @admin.display(description="last error")
    def error(self, email):
        return Truncator(email.last_error).chars(80) or "-"

    def has_add_permission(self, request):
        return False  # written by the services that mail learners

    def has_change_permission(self, request, obj=None):
        return False  # changed only by the worker and the action below

    def has_delete_permission(self, request, obj=None):
        return False  # a learner's erasure takes theirs with it

    @admin_action(permission="signups.retry_learneremail", description="Send again (failed emails)")
    def send_again(self, request, queryset):
        count = learner_emails_send_again(queryset, now=timezone.now())
        skipped = queryset.count() - count
        self.message_user(
            request, f"{count} failed email{'s' if count != 1 else ''} will be sent again now; skipped {skipped} (not failed)."
        )


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["email_digest", "reason", "created_at"]
    list_filter = ["reason"]
    readonly_fields = ["email_digest", "reason", "created_at"]

    def has_add_permission(self, request):
        return False


@admin.register(Erasure)
class ErasureAdmin(admin.ModelAdmin):
    list_display = ["erased_on", "cohort"]
    list_filter = ["cohort"]
    date_hierarchy = "erased_on"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --- The cohort's admin page: its learners and groups, and the group actions -------------------


def utc_offset_label(minutes: int) -> str:
    """"UTC+5:30", "UTC-3:30", "UTC+0": the sign applies to the hours and the minutes together
    (floor division made St John's -210 minutes "UTC-4:30")."""
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{'-' if minutes < 0 else '+'}{hours}" + (f":{rest:02d}" if rest else "")


def cohort_learners_section(cohort, today, user, query=None) -> dict:
    """Counts for anyone who may see the cohort; who is in which group only for those who may see
    learners. Groups are listed a page at a time (`groups_page`), searchable by name (`groups_q`)."""
    query = query or {}
    counts = cohort_member_counts(cohort)
    overview = cohort_members_overview(cohort, counts, group_search=query.get("groups_q", "").strip(), group_page=query.get("groups_page", 1))
    quality = cohort_groups_quality(cohort, counts)
    spreads = {row.key.pk: row for row in quality.groups}
    return {
        "counts": [
            (Enrollment.Status(status).label, count, learners_in_cohort_url(cohort, status) if user.has_perm("signups.view_learner") else None)
            for status, count in sorted(cohort_enrollment_counts(cohort).items())
        ],
        "offsets": [(utc_offset_label(offset), count) for offset, count in overview["offsets"]],
        "experience": overview["experience"],
        "groups": [(group, members, spreads.get(group.pk)) for group, members in overview["groups"]],
        "groups_page": overview["groups_page"],
        "groups_q": query.get("groups_q", ""),
        "show_members": user.has_perm("signups.view_learner"),
        "without_group": overview["without_group"],
        "quality": quality,
        "quality_by_strategy": [(GroupStrategy(strategy).label, part) for strategy, part in quality.per_strategy().items()],
    }


@admin_action(permission="cohorts.form_groups", description="Form study groups now")
def form_groups(modeladmin, request, queryset):
    for cohort in queryset:
        try:
            quality = cohort_groups_form(cohort, now=timezone.now())
        except (GroupsExist, NoLearnersToGroup, ExperimentNotSet) as refusal:
            modeladmin.message_user(request, str(refusal), messages.WARNING)
        else:
            summary = (
                f"{cohort}: {len(quality.groups)} groups of {quality.smallest} to {quality.largest}; "
                f"{quality.share_within_good_spread:.0%} within 2 hours; {quality.ungrouped} left without a group."
            )
            problem = formation_quality_problem(cohort, quality)
            if problem:  # formed all the same: the organizer decides whether to change the strategy next round
                modeladmin.message_user(request, f"{summary} Poor groups: {problem}", messages.WARNING)
            else:
                modeladmin.message_user(request, summary)
            per_strategy = quality.per_strategy()
            if len(per_strategy) > 1:  # an experiment: each arm's groups, and the seed that split them
                arms = "; ".join(
                    f"{GroupStrategy(strategy).label}: {len(part.groups)} groups, {part.learners} learners, "
                    f"{part.share_within_good_spread:.0%} within 2 hours" for strategy, part in per_strategy.items()
                )
                modeladmin.message_user(request, f"{cohort}: {arms}. Seed {quality.seed}.")
            if not cohort_groups_have_place_to_talk(cohort):
                modeladmin.message_user(request, groups_without_place_to_talk_warning(cohort), messages.WARNING)


@admin_action(permission="cohorts.form_groups", description="Re-form study groups (merge those that shrank)")
def reform_groups(modeladmin, request, queryset):
    for cohort in queryset:
        reform = cohort_groups_reform(cohort, now=timezone.now())
        dissolved = ", ".join(reform.dissolved) or "none"
        modeladmin.message_user(
            request,
            f"{cohort}: moved {reform.moved} learners; groups merged away: {dissolved}; "
            f"{reform.quiet} quiet learner{'s' if reform.quiet != 1 else ''} not counted as active.",
        )


class GroupMembersInline(admin.TabularInline):
    """A group's current members on the group's own admin page (the cohort's page lists groups only),
    for those who may see learners."""

    model = Enrollment
    fk_name = "group"
    verbose_name, verbose_name_plural = "member", "members"
    fields = ["member", "timezone", "experience", "status", "grouped_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).filter(status__in=Enrollment.GROUPED).select_related("learner").order_by("learner__first_name", "pk")

    @admin.display(description="Learner")
    def member(self, enrollment):
        return enrollment.learner.first_name or enrollment.learner.email.split("@")[0]

    @admin.display(description="Time zone")
    def timezone(self, enrollment):
        return enrollment.learner.timezone

    @admin.display(description="Experience")
    def experience(self, enrollment):
        return enrollment.learner.get_experience_display()

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("signups.view_learner")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


StudyGroupAdmin.inlines = [*StudyGroupAdmin.inlines, GroupMembersInline]

CohortAdmin.page_sections.append(
    CohortPageSection("Learners and study groups", "admin/signups/cohort_learners.html", cohort_learners_section)
)
CohortAdmin.actions = [*CohortAdmin.actions, form_groups, reform_groups]


# --- The course's admin: how many wait on its waitlist --------------------------------------------


@admin.display(description="waiting on the waitlist", ordering="waitlist_size")
def course_waitlist_size(course) -> int:
    """A count, no learner: Course editors and Viewers see it too. A course being added has no
    annotation, and nobody waiting."""
    return getattr(course, "waitlist_size", 0)


# The course admin is cohorts' own, and cohorts knows no learners: signups annotates its
# queryset (one subquery, see courses_with_waitlist_size) and adds the column and the field.
CourseAdmin.queryset_annotations.append(courses_with_waitlist_size)
CourseAdmin.list_display = [*CourseAdmin.list_display, course_waitlist_size]
CourseAdmin.readonly_fields = [*CourseAdmin.readonly_fields, course_waitlist_size]


# --- The cohort's admin: each group's weekly check-in rate, the quiet ones marked ---------------

GROUP_CHECKINS_LISTED = 50  # rows on the page: the quiet groups first, then the least active


def cohort_group_checkins_section(cohort, today, user, query) -> dict:
    """Counts only (no learner): whoever may see the cohort sees them. One query."""
    weeks, groups = groups_checkins(cohort, today)
    judged = judged_weeks(cohort, today)
    # Quiet first, then by the last judged (or shown) week's share, lowest first.
    last = (judged or weeks or [0])[-1]
    ordered = sorted(groups, key=lambda group: (not group.quiet, group.share(last) or 0, group.number))
    rows = [
        (group, [(week, group.checked_in.get(week, 0), share) for week, share in zip(weeks, group.shares(weeks))])
        for group in ordered[:GROUP_CHECKINS_LISTED]
    ]
    return {
        "weeks": weeks, "judged": judged, "groups": len(groups), "quiet": sum(group.quiet for group in groups), "rows": rows,
        "listed": len(rows), "quiet_percent": f"{QUIET_CHECKIN_SHARE * 100:.0f}",
    }


CohortAdmin.page_sections.append(
    CohortPageSection("Weekly check-ins per group", "admin/signups/cohort_group_checkins.html", cohort_group_checkins_section)
)
