"""Staff write the course's emails here: an editor with the variables beside it, a live preview,
a test send to themselves, and the history of every version with diffs and restore."""

import difflib
from types import SimpleNamespace

from django import forms
from django.contrib import admin, messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from cohorts.models import Cohort, Course
from scheduler.models import EmailKind, EmailTemplate, EmailTemplateVersion
from scheduler.selectors import preview_context, sample_contexts
from scheduler.services import delivery_header, email_render, email_test_send, template_restore, template_version_save
from scheduler.templating import FILTERS, SUBJECT_MAX_LENGTH, VARIABLES, TemplateProblem, email_check, markdown_to_html_template


class EmailTemplateForm(forms.ModelForm):
    subject = forms.CharField(widget=forms.TextInput(attrs={"size": 100}), help_text=f"One line, at most {SUBJECT_MAX_LENGTH} characters.")
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 28, "cols": 100, "spellcheck": "true"}),
        help_text="Markdown: ## headings, **bold**, - lists, [link text](url). Variables and conditions as listed.",
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
            try:
                email_check(cleaned["subject"], cleaned["body"], sample_contexts())
            except TemplateProblem as problem:
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
        """Render what is in the editor, unsaved, for a sample learner: JSON for the live preview."""
        if request.method != "POST" or not self.has_change_permission(request):
            return JsonResponse({"error": "Not allowed."}, status=403)
        course = Course.objects.filter(pk=request.POST.get("course") or None).first()
        if course is None:
            return JsonResponse({"error": "Choose the course first."}, status=400)
        kind = request.POST.get("kind") or EmailKind.WEEK
        try:
            week_number = int(request.POST.get("week_number") or 0)
        except ValueError:
            week_number = 0
        cohort = Cohort.objects.filter(course=course, pk=request.POST.get("preview_cohort") or None).first()
        subject, body = request.POST.get("subject", ""), request.POST.get("body", "")
        try:
            email_check(subject, body, sample_contexts())
        except TemplateProblem as problem:
            return JsonResponse({"error": f"{problem.field.capitalize()}: {problem}"})
        context, who = preview_context(course, cohort, kind, week_number)
        unsaved = SimpleNamespace(pk=None, subject=subject, body=body, body_html=markdown_to_html_template(body))
        rendered = email_render(unsaved, context, delivery_header(kind, cohort.slug if cohort else None, week_number, "preview"))
        return JsonResponse({"subject": rendered.subject, "html": rendered.html, "text": rendered.text, "who": who})

    def test_send_view(self, request, pk):
        template = get_object_or_404(EmailTemplate.objects.select_related("course", "current_version"), pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, template):
            return redirect("admin:scheduler_emailtemplate_change", pk)
        if not request.user.email:
            self.message_user(request, "Your account has no email address: add one to your user to receive tests.", messages.ERROR)
        elif template.current_version is None:
            self.message_user(request, "Save the template first.", messages.ERROR)
        else:
            cohort = Cohort.objects.filter(course=template.course, pk=request.POST.get("preview_cohort") or None).first()
            rendered = email_test_send(template, cohort, request.user.email)
            self.message_user(request, f"Sent “{rendered.subject}” (version {template.current_version.number}) to {request.user.email}.")
        return redirect("admin:scheduler_emailtemplate_change", pk)

    def diff_view(self, request, pk, number):
        template = get_object_or_404(EmailTemplate, pk=pk)
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
        if request.method == "POST" and self.has_change_permission(request, template):
            try:
                restored = template_restore(version, user=request.user)
            except TemplateProblem as problem:
                self.message_user(request, f"Version {number} no longer passes the checks: {problem}", messages.ERROR)
            else:
                self.message_user(request, f"Restored version {number} as version {restored.number}, now in force.")
        return redirect("admin:scheduler_emailtemplate_change", pk)
