"""Staff write the course's emails here: an editor with the variables beside it, a live preview,
a test send to themselves, and the history of every version with diffs and restore."""

import difflib
from urllib.parse import urlencode
from types import SimpleNamespace

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from jinja2 import TemplateError
from kombu.exceptions import OperationalError
from django.utils import timezone

from cohorts.admin import CohortAdmin, CohortPageSection, action_form_response
from mooc.admin_paging import EstimatedCountPaginator
from cohorts.models import Cohort, Course
from cohorts.services import cohort_sending_pause
from mooc.permissions import admin_action
from scheduler.forecast import cohort_week_ahead
from scheduler.planning import deliveries_resend_failed, deliveries_send_week_now
from scheduler.models import Delivery, EmailKind, EmailTemplate, EmailTemplateVersion, TrackingEvent
from scheduler.selectors import (
    QUIET_AFTER_WEEKS, cohort_delivery_summary, learner_activity, learners_quiet, preview_context, sample_contexts,
    sending_when, worker_absence,
)
from scheduler.services import (
    TestSendNotQueued, delivery_header, email_render, email_test_queue, template_restore, template_version_save,
)
from signups.admin import LearnerAdmin, LearnerPageSection
from scheduler.simulation import simulation_allowed
from signups.emails import ENQUEUE_RETRY_POLICY
from signups.selectors import learner_ids_with_email
from scheduler.templating import FILTERS, LIMITS, SUBJECT_MAX_LENGTH, VARIABLES, TemplateProblem, email_problems, markdown_to_html_template


class EmailTemplateForm(forms.ModelForm):
    subject = forms.CharField(widget=forms.TextInput(attrs={"size": 100}), help_text=f"One line, at most {SUBJECT_MAX_LENGTH} characters.")
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 28, "cols": 100, "spellcheck": "true"}),
        help_text="Markdown: ## headings, **bold**, - lists, [link text](url), a backslash at the end of a line to keep its line break. Variables and conditions as listed.",
    )

    class Meta:
        model = EmailTemplate
        fields = ["course", "cohort", "kind", "week_number"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        version = self.instance.current_version if self.instance.pk else None
        if version is not None:
            self.fields["subject"].initial = version.subject
            self.fields["body"].initial = version.body

    def clean(self):
        cleaned = super().clean()
        course, cohort = cleaned.get("course"), cleaned.get("cohort")
        if course and cohort and cohort.course_id != course.pk:
            self.add_error("cohort", "This cohort runs another course.")
        if cleaned.get("kind") == EmailKind.WEEK and course and not 1 <= (cleaned.get("week_number") or 0) <= course.week_count:
            self.add_error("week_number", f"A weekly email needs a week between 1 and {course.week_count}.")
        if "subject" in cleaned and "body" in cleaned:
            for problem in email_problems(cleaned["subject"], cleaned["body"], sample_contexts()):
                self.add_error(problem.field, str(problem))
        return cleaned


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    form = EmailTemplateForm
    list_display = ["__str__", "course", "cohort", "current_subject", "updated_at"]
    list_filter = ["course", "kind", "cohort"]
    list_select_related = ["course", "cohort", "current_version"]
    fields = ["course", "cohort", "kind", "week_number", "subject", "body"]
    change_form_template = "admin/scheduler/emailtemplate/change_form.html"

    @admin.display(description="subject")
    def current_subject(self, template):
        return template.current_version.subject if template.current_version else "-"

    def save_model(self, request, obj, form, change):
        obj.save()
        current = obj.current_version
        subject, body = form.cleaned_data["subject"], form.cleaned_data["body"]
        if current is None or (current.subject, current.body) != (subject, body):
            template_version_save(obj, subject, body, user=request.user)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        course = obj.course if obj else None
        context.update(
            {
                "variables": VARIABLES,
                "filters": FILTERS,
                "limits": LIMITS,
                "preview_url": reverse("admin:scheduler_emailtemplate_preview"),
                "preview_cohorts": Cohort.objects.filter(course=course).order_by("-start_date") if course else Cohort.objects.none(),
                # Read-only history, newest first: versions are never edited, only added.
                "versions": obj.versions.select_related("created_by").order_by("-number") if obj else [],
            }
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("preview/", view(self.preview_view), name="scheduler_emailtemplate_preview"),
            path("<int:pk>/test-send/", view(self.test_send_view), name="scheduler_emailtemplate_test_send"),
            path("<int:pk>/versions/<int:number>/diff/", view(self.diff_view), name="scheduler_emailtemplate_diff"),
            path("<int:pk>/versions/<int:number>/restore/", view(self.restore_view), name="scheduler_emailtemplate_restore"),
            *super().get_urls(),
        ]

    def preview_view(self, request):
        """Render what is in the editor, unsaved, for a sample learner: JSON for the live preview,
        its parts, or `errors`: every problem found, each a sentence for staff.

        Anyone who may read templates may preview; as a real learner of the cohort (their name,
        never their links or address) only those who may see learners.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return JsonResponse({"errors": ["Not allowed."]}, status=405)
        course = Course.objects.filter(pk=request.POST.get("course") or None).first()
        if course is None:
            return JsonResponse({"errors": ["Choose the course first."]}, status=400)
        kind = request.POST.get("kind") or EmailKind.WEEK
        try:
            week_number = int(request.POST.get("week_number") or 0)
        except ValueError:
            week_number = 0
        cohort = Cohort.objects.filter(course=course, pk=request.POST.get("preview_cohort") or None).first()
        subject, body = request.POST.get("subject", ""), request.POST.get("body", "")
        problems = email_problems(subject, body, sample_contexts())
        if problems:
            return JsonResponse({"errors": [f"{problem.field.capitalize()}: {problem}" for problem in problems]})
        context, who = preview_context(course, cohort, kind, week_number, real_learner=request.user.has_perm("signups.view_learner"))
        unsaved = SimpleNamespace(pk=None, subject=subject, body=body, body_html=markdown_to_html_template(body))
        try:
            rendered = email_render(unsaved, context, delivery_header(kind, cohort.slug if cohort else None, week_number, "preview"))
        except TemplateError as error:  # a real learner's data can be bigger than the samples
            return JsonResponse({"errors": [f"This email cannot be made for {who}: {error}"]})
        return JsonResponse({"subject": rendered.subject, "html": rendered.html, "text": rendered.text, "who": who})

    def test_send_view(self, request, pk):
        template = get_object_or_404(EmailTemplate.objects.select_related("course", "current_version"), pk=pk)
        if not self.has_change_permission(request, template):
            raise PermissionDenied
        if request.method != "POST":
            return redirect("admin:scheduler_emailtemplate_change", pk)
        if not request.user.email:
            self.message_user(request, "Your account has no email address: add one to your user to receive tests.", messages.ERROR)
        elif template.current_version is None:
            self.message_user(request, "Save the template first.", messages.ERROR)
        else:
            cohort = Cohort.objects.filter(course=template.course, pk=request.POST.get("preview_cohort") or None).first()
            try:
                rendered = email_test_queue(template, cohort, request.user.email)
            except TemplateError as error:
                self.message_user(request, f"The email cannot be made: {error}", messages.ERROR)
            except TestSendNotQueued:
                self.message_user(
                    request, "The test email was not sent: the task queue (the Celery broker) cannot be reached. "
                    "Try again in a minute; if it persists, check /healthz.", messages.ERROR,
                )
            else:
                self.message_user(
                    request, f"Queued “{rendered.subject}” (version {template.current_version.number}): "
                    f"a worker sends it to {request.user.email} in a moment.",
                )
        return redirect("admin:scheduler_emailtemplate_change", pk)

    def diff_view(self, request, pk, number):
        template = get_object_or_404(EmailTemplate, pk=pk)
        if not self.has_view_permission(request, template):
            raise PermissionDenied
        version = get_object_or_404(EmailTemplateVersion, template=template, number=number)
        previous = template.versions.filter(number__lt=number).order_by("-number").first()
        before = f"Subject: {previous.subject}\n\n{previous.body}" if previous else ""
        after = f"Subject: {version.subject}\n\n{version.body}"
        lines = list(
            difflib.unified_diff(
                before.splitlines(), after.splitlines(),
                f"version {previous.number}" if previous else "(nothing)", f"version {version.number}", lineterm="",
            )
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"{template}: version {number} against the one before",
            "template_obj": template, "version": version, "previous": previous, "lines": lines,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/scheduler/emailtemplate/diff.html", context)

    def restore_view(self, request, pk, number):
        template = get_object_or_404(EmailTemplate, pk=pk)
        version = get_object_or_404(EmailTemplateVersion, template=template, number=number)
        if not self.has_change_permission(request, template):
            raise PermissionDenied
        if request.method == "POST":
            try:
                restored = template_restore(version, user=request.user)
            except TemplateProblem as problem:
                self.message_user(request, f"Version {number} no longer passes the checks: {problem}", messages.ERROR)
            else:
                self.message_user(request, f"Restored version {number} as version {restored.number}, now in force.")
        return redirect("admin:scheduler_emailtemplate_change", pk)


# --- The cohort's admin page: what was sent, and the organizers' levers -------------------------


def cohort_deliveries_section(cohort, today, user, query=None) -> dict:
    """Counts for anyone who may see the cohort; the failed rows (who they were for) only for
    those who may read the ledger."""
    summary = cohort_delivery_summary(cohort)
    return {**summary, "show_failed": user.has_perm("scheduler.view_delivery")}


class EmailChoiceForm(forms.Form):
    email = forms.ChoiceField(label="Which email")

    def __init__(self, *args, week_count: int, weeks_only: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(f"week:{number}", f"Week {number}") for number in range(1, week_count + 1)]
        if not weeks_only:
            choices = [(f"{kind}:0", EmailKind(kind).label) for kind in (EmailKind.WELCOME, EmailKind.GROUP_INTRO)] + choices
            choices.append((f"{EmailKind.COURSE_END}:0", EmailKind.COURSE_END.label))
        self.fields["email"].choices = choices

    def chosen(self) -> tuple[str, int]:
        kind, number = self.cleaned_data["email"].split(":")
        return kind, int(number)


def _one_course(modeladmin, request, queryset):
    courses = {cohort.course_id for cohort in queryset}
    if len(courses) != 1:
        modeladmin.message_user(request, "Choose cohorts of one course at a time.", messages.ERROR)
        return None
    return queryset.first().course


@admin_action(permission="cohorts.pause_sending", description="Pause sending")
def pause_sending(modeladmin, request, queryset):
    changed = sum(cohort_sending_pause(cohort, True) for cohort in queryset)
    modeladmin.message_user(request, f"Paused sending for {changed} cohort{'s' if changed != 1 else ''}.")


@admin_action(permission="cohorts.pause_sending", description="Resume sending")
def resume_sending(modeladmin, request, queryset):
    changed = sum(cohort_sending_pause(cohort, False) for cohort in queryset)
    modeladmin.message_user(request, f"Resumed sending for {changed} cohort{'s' if changed != 1 else ''}.")


def _longest_round(cohorts) -> int:
    """The most weeks any of these rounds has (each keeps the length the course had when it started)."""
    return max(cohort.week_count for cohort in cohorts)


@admin_action(permission="scheduler.resend_failed", description="Resend an email to those it failed for…")
def resend_failed(modeladmin, request, queryset):
    course = _one_course(modeladmin, request, queryset)
    if course is None:
        return None
    form = EmailChoiceForm(request.POST if "apply" in request.POST else None, week_count=_longest_round(queryset))
    if form.is_valid():
        kind, number = form.chosen()
        now = timezone.now()
        count = sum(deliveries_resend_failed(cohort, kind, number, now) for cohort in queryset)
        modeladmin.message_user(request, f"{count} failed email{'s' if count != 1 else ''} will be sent again {sending_when(now)}.")
        return None
    return action_form_response(
        modeladmin, request, queryset, form, action="resend_failed", title="Resend an email to those it failed for",
        intro="Every failed row of this email goes back to the queue, including those interrupted during a provider call "
        "(they may have arrived already: this is your decision).", submit_label="Send again",
    )


@admin_action(permission="scheduler.send_week_now", description="Send a week now…")
def send_week_now(modeladmin, request, queryset):
    course = _one_course(modeladmin, request, queryset)
    if course is None:
        return None
    form = EmailChoiceForm(request.POST if "apply" in request.POST else None, week_count=_longest_round(queryset), weeks_only=True)
    if form.is_valid():
        _, number = form.chosen()
        now = timezone.now()
        count = sum(deliveries_send_week_now(cohort, number, now) for cohort in queryset)
        modeladmin.message_user(request, f"Week {number} goes to {count} learner{'s' if count != 1 else ''} {sending_when(now)}.")
        return None
    return action_form_response(
        modeladmin, request, queryset, form, action="send_week_now", title="Send a week now",
        intro="Sends the week to every mailable learner who has not had it, now, even if it was skipped as too late.",
        submit_label="Send it now",
    )


@admin_action(permission="scheduler.simulate_events", description="Simulate tracking events (development outbox only)")
def simulate_events(modeladmin, request, queryset):
    """A worker makes them up (scheduler/simulation.py): hundreds of webhook posts are no work for a request."""
    from scheduler.tasks import tracking_events_simulate as simulate_task

    if not simulation_allowed():
        modeladmin.message_user(
            request, f"Not simulated: the site sends with {settings.EMAIL_BACKEND}, not the development outbox; "
            "made-up bounces would stop real learners' mail.", messages.ERROR,
        )
        return
    cohort_ids = sorted(queryset.values_list("pk", flat=True))
    try:
        simulate_task.apply_async(args=[cohort_ids], retry_policy=ENQUEUE_RETRY_POLICY)
    except (OperationalError, OSError) as error:
        modeladmin.message_user(request, f"Not simulated: the task queue is unreachable ({error}).", messages.ERROR)
        return
    modeladmin.message_user(
        request, f"A worker is making up the tracking events of the outbox's emails for {len(cohort_ids)} "
        f"cohort{'s' if len(cohort_ids) != 1 else ''}: they show {sending_when(timezone.now())}.",
    )


def cohort_forecast_section(cohort, today, user, query) -> dict:
    """What is due in the next 7 days (scheduler/forecast.py: the same code as send_due): counts
    only, so anyone who may see the cohort sees it."""
    now = timezone.now()
    return {"now": now, "paused": cohort.sending_paused, "server_zone": settings.TIME_ZONE,
            **({} if cohort.sending_paused else cohort_week_ahead(cohort, now))}


def worker_banner_section(cohort, today, user, query) -> dict:
    """At the top of the cohort's page: a warning when no worker reports in (nothing is sent)."""
    return {"absence": worker_absence(timezone.now())}


CohortAdmin.page_sections.append(CohortPageSection("Workers", "admin/scheduler/worker_banner.html", worker_banner_section, top=True))
CohortAdmin.page_sections.append(CohortPageSection("Due in the next 7 days", "admin/scheduler/cohort_forecast.html", cohort_forecast_section))
CohortAdmin.page_sections.append(CohortPageSection("Emails sent", "admin/scheduler/cohort_deliveries.html", cohort_deliveries_section))


# --- The learner's admin page: what their weekly emails did, per enrollment ----------------------


def learner_activity_section(learner, user) -> dict | None:
    """Per enrollment in a round: the last week whose email was sent, delivered, opened and
    clicked, and whether the learner counts as quiet there (learners_quiet). For those who may
    read the ledger; the learner admin is signups', which imports no scheduler: this section
    is registered on it from here."""
    if not user.has_perm("scheduler.view_delivery"):
        return None
    activity = learner_activity([learner.pk]).get(learner.pk, {})
    rows = []
    for enrollment in learner.enrollments.exclude(cohort=None).select_related("cohort").order_by("-created_at"):
        cohort = enrollment.cohort
        rows.append({
            "enrollment": enrollment,
            "activity": activity.get(cohort.pk),
            "quiet": learner.pk in learners_quiet(cohort, learner_ids=[learner.pk]),
            "ledger_url": reverse("admin:scheduler_delivery_changelist") + "?" + urlencode({"q": learner.email, "cohort__id__exact": cohort.pk}),
        })
    return {"rows": rows, "quiet_after": QUIET_AFTER_WEEKS}


LearnerAdmin.page_sections.append(
    LearnerPageSection("Weekly emails: what the provider reported", "admin/scheduler/learner_activity.html", learner_activity_section)
)
CohortAdmin.actions = [*CohortAdmin.actions, pause_sending, resume_sending, resend_failed, send_week_now, simulate_events]


class _ExactSearchReadOnlyAdmin(admin.ModelAdmin):
    """A list of millions of rows written only by the scheduler: counted by estimate, newest first
    on the primary key, searched exactly on indexed columns (an address, a delivery id or a
    provider's message id: a substring search over a million rows and a join would scan them
    all), and never added or changed here. Subclasses name their two searched columns."""

    delivery_field = "pk"
    message_id_field = "message_id"
    search_help_text = "An exact email address, a delivery id or the provider's message id."
    ordering = ["-pk"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if "@" in term:
            return queryset.filter(learner_id__in=learner_ids_with_email(term)), False
        if term.isdigit():
            return queryset.filter(Q(**{self.delivery_field: int(term)}) | Q(**{self.message_id_field: term})), False
        return queryset.filter(**{self.message_id_field: term}), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(_ExactSearchReadOnlyAdmin):
    """The ledger: about eleven rows per learner per round, a million for a large one; it changes
    only through the scheduler and the cohort's actions."""

    list_display = ["pk", "learner", "cohort", "kind", "week_number", "status", "attempts", "due_at", "sent_at"]
    list_filter = ["status", "kind", "cohort"]
    list_select_related = ["learner", "cohort__course"]  # a cohort's name says its course's
    search_fields = ["provider_message_id"]  # and an address or a row id: see get_search_results
    message_id_field = "provider_message_id"
    readonly_fields = [field.name for field in Delivery._meta.fields]


class OrphanedFilter(admin.SimpleListFilter):
    title = "orphaned"
    parameter_name = "orphaned"

    def lookups(self, request, model_admin):
        return [("yes", "For no email or learner of ours"), ("no", "Found its learner")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):  # known only once applied (scheduler/events.py)
            return queryset.filter(learner__isnull=self.value() == "yes", applied_at__isnull=False)
        return queryset


@admin.register(TrackingEvent)
class TrackingEventAdmin(_ExactSearchReadOnlyAdmin):
    """What the providers reported, as stored (scheduler/events.py): read-only, for support."""

    list_display = ["pk", "esp", "event_type", "refusal", "occurred_at", "delivery_id", "learner", "received_at", "applied_at"]
    list_filter = ["esp", "event_type", "refusal", OrphanedFilter]
    list_select_related = ["learner"]
    search_fields = ["message_id"]  # and an address or a delivery id: see get_search_results
    delivery_field = "delivery_id"
    readonly_fields = [field.name for field in TrackingEvent._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return False


from scheduler import admin_dashboard  # noqa: E402,F401  the dashboards' pages, on the cohort's and course's admin
from scheduler import admin_outcomes  # noqa: E402,F401  the outcome report's pages, beside the dashboards
