from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.utils import timezone

from cohorts.forms import LinkListField
from cohorts.models import Cohort, CohortStatus, Course, StudyGroup, Week
from cohorts.selectors import cohort_groups_have_place_to_talk, cohort_has_groups, cohort_next_week_due
from cohorts.services import (
    WeekCountChange, cohort_close_signup, cohort_group_links_follow, cohort_start_next, course_week_count_change,
)
from mooc.permissions import ActionPermissionsMixin, admin_action


class WeekForm(forms.ModelForm):
    # No Meta: the admin builds the rest of the form from the inline's fieldsets.
    readings = LinkListField()
    exercises = LinkListField()


class WeekInline(admin.StackedInline):
    model = Week
    # A link typed without its scheme (ocw.mit.edu/...) means https.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    form = WeekForm
    extra = 0
    ordering = ["number"]
    fieldsets = [
        (None, {"fields": [("number", "title")]}),
        ("Lecture", {"fields": [("lecture_title", "lecture_url")]}),
        (None, {"fields": ["readings", "exercises"]}),
        ("Project", {"fields": [("project_title", "project_url")]}),
        ("Discussion", {"fields": [("discussion_title", "discussion_url")]}),
    ]


@dataclass
class PageLink:
    """A link another app adds to the top of a cohort's or course's admin page, with the URLs of
    the pages it leads to (the scheduler's dashboards): cohorts knows no pages but its own.

    `urls(model_admin)` returns URL patterns added to the model admin's own; `url(obj, user)`
    the link for that object, or None when `user` may not follow it.
    """

    label: str
    urls: Callable
    url: Callable


class PageLinksMixin:
    """The model admin's pages grow the URLs and links other apps register in `page_links`."""

    page_links: list[PageLink]

    def get_urls(self):
        added = [pattern for link in self.page_links for pattern in link.urls(self)]
        return [*added, *super().get_urls()]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["page_links"] = [(link.label, url) for link in self.page_links if (url := link.url(obj, request.user))]
        return super().render_change_form(request, context, add, change, form_url, obj)


class CourseForm(forms.ModelForm):
    links = LinkListField()


@admin.register(Course)
class CourseAdmin(PageLinksMixin, admin.ModelAdmin):
    form = CourseForm
    list_display = ["title", "slug", "week_count", "updated_at"]
    search_fields = ["title", "slug"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [WeekInline]
    # Other apps add numbers about each course (signups: how many wait on its waitlist) as
    # annotations of this queryset, so the list stays one query; cohorts knows no learners.
    # Filled at start-up, with the column that shows each; class-level on purpose.
    queryset_annotations: list[Callable[[QuerySet[Course]], QuerySet[Course]]] = []
    page_links: list[PageLink] = []  # see PageLink; class-level on purpose

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        for annotate in self.queryset_annotations:
            queryset = annotate(queryset)
        return queryset

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "week_count" in form.changed_data:
            today = timezone.now().date()
            message = week_count_change_message(course_week_count_change(obj, today), today)
            if message:
                self.message_user(request, message)


def week_count_change_message(change: WeekCountChange, today) -> str:
    """E.g. "2 rounds that have not started now have 10 weeks; Round 1, running, keeps 8." ("" when no round)."""
    parts = []
    if change.followed:
        one = change.followed == 1
        parts.append(
            f"{change.followed} round{'' if one else 's'} that {'has' if one else 'have'} not started "
            f"now {'has' if one else 'have'} {change.week_count} weeks"
        )
    for cohort in change.kept:
        parts.append(f"{cohort.name}, {CohortStatus(cohort.status_on(today)).label.lower()}, keeps {cohort.week_count}")
    return "; ".join(parts) + "." if parts else ""


class CohortForm(forms.ModelForm):
    class Meta:
        model = Cohort
        fields = "__all__"
        widgets = {"discussion_url_pattern": forms.TextInput(attrs={"size": 80})}

    def clean_start_date(self):
        start = self.cleaned_data["start_date"]
        today = timezone.now().date()
        if self.instance._state.adding:
            if start < today:
                raise forms.ValidationError("A new cohort cannot start in the past.")
            return start
        # self.instance still holds the stored dates here: the form copies its values in after cleaning.
        stored = self.instance.start_date
        if start == stored:
            return start
        if stored <= today:
            # Its learners have had weeks of emails by these dates; moving them would resend or skip weeks.
            raise forms.ValidationError(
                f"This round started on {stored:%A %-d %B %Y}: its start date can no longer move. "
                "To stop its emails for a while, tick “Sending paused”; to run the course at another time, "
                "start a new round (the “Start the next round” action)."
            )
        if start < today:
            raise forms.ValidationError("A round that has not started cannot be moved into the past.")
        return start


class StartNextRoundForm(forms.Form):
    weeks_later = forms.IntegerField(min_value=1, max_value=52, initial=4, label="Start how many weeks after this one?")


def action_form_response(model_admin, request, queryset, form, *, action, title, intro, submit_label):
    """The page an admin action shows when it needs an answer first (templates/admin/action_form.html).

    It names the first 50 objects and counts the rest, and posts back what the list posted (the
    ids ticked, and "select all" when chosen), never one field per object of a long list.
    """
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title, "intro": intro, "submit_label": submit_label, "action": action,
        "queryset": queryset, "form": form, "opts": model_admin.model._meta,
        "shown": queryset[:50], "count": queryset.count(),
        "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across") == "1",
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/action_form.html", context)


@dataclass
class CohortPageSection:
    """A part of the cohort's admin page that another app contributes (learners, deliveries).

    `context(cohort, today, user, query)` returns the template's context (`query`: the page's
    GET parameters, for a section that pages or searches); cohorts itself knows nothing
    of learners, so signups and the scheduler register their sections here. Each section shows
    `user` only what their permissions allow (a Viewer sees counts, never a learner).
    """

    title: str
    template: str
    context: Callable


@admin.register(Cohort)
class CohortAdmin(ActionPermissionsMixin, PageLinksMixin, admin.ModelAdmin):
    form = CohortForm
    list_display = ["name", "course", "status", "start_date", "signup_opens_on", "signup_closes_on", "capacity"]
    list_filter = ["course"]
    list_select_related = ["course"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    date_hierarchy = "start_date"
    change_form_template = "admin/cohorts/cohort/change_form.html"
    fieldsets = [
        (None, {"fields": ["course", "name", "slug", "start_date", "capacity"]}),
        ("Signup", {"fields": [("signup_opens_on", "signup_closes_on")]}),
        ("Weekly email", {"fields": [("send_weekday", "send_time"), "sending_paused"]}),
        ("Study groups", {"fields": [("group_size_min", "group_size_target", "group_size_max"), "groups_form_on", "discussion_url_pattern"]}),
    ]
    actions = ["start_next_round", "close_signup"]
    # Filled by other apps at start-up (see CohortPageSection); class-level on purpose.
    page_sections: list[CohortPageSection] = []
    page_links: list[PageLink] = []  # see PageLink

    @admin.display(description="status")
    def status(self, cohort):
        return CohortStatus(cohort.status_on(timezone.now().date())).label

    def change_view(self, request, object_id, form_url="", extra_context=None):
        cohort = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if cohort is not None:
            today = timezone.now().date()
            next_week = cohort_next_week_due(cohort, today)
            status = cohort.status_on(today)
            extra_context["cohort_summary"] = {
                "status": CohortStatus(status).label,
                "week_count": cohort.week_count,
                "end_date": cohort.end_date,
                "groups_formation_date": cohort.groups_formation_date,
                "next_week": next_week,
                "groups_formed": cohort_has_groups(cohort),
                # Worth a warning while the round has learners to talk; not once it is over.
                "groups_without_place_to_talk": status != CohortStatus.FINISHED and not cohort_groups_have_place_to_talk(cohort),
            }
            extra_context["cohort_sections"] = [
                {"title": section.title, "template": section.template, **section.context(cohort, today, request.user, request.GET)}
                for section in self.page_sections
            ]
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "discussion_url_pattern" in form.changed_data:
            followed = cohort_group_links_follow(obj, old_pattern=form.initial.get("discussion_url_pattern") or "")
            if followed:
                self.message_user(request, f"{obj.name}: discussion links given to {followed} group{'s' if followed != 1 else ''}.")

    @admin_action(permission="cohorts.start_next_round", description="Start the next round (a copy, N weeks later)…")
    def start_next_round(self, request, queryset):
        form = StartNextRoundForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for cohort in queryset.select_related("course"):
                try:
                    new = cohort_start_next(cohort, form.cleaned_data["weeks_later"])
                except ValidationError as error:
                    self.message_user(request, f"{cohort}: {' '.join(error.messages)}", messages.ERROR)
                else:
                    self.message_user(request, f"Created {new}, starting {new.start_date:%A %-d %B %Y}.")
            return None
        return action_form_response(
            self, request, queryset, form, action="start_next_round", title="Start the next round",
            intro="Each new round copies every setting of one of these cohorts and starts the given number of weeks after it.",
            submit_label="Create the next round",
        )

    @admin_action(permission="cohorts.close_signup", description="Close signup now")
    def close_signup(self, request, queryset):
        today = timezone.now().date()
        closed = sum(cohort_close_signup(cohort, today) for cohort in queryset)
        self.message_user(request, f"Closed signup for {closed} cohort{'s' if closed != 1 else ''}.")


@admin.register(StudyGroup)
class StudyGroupAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # a typed link without one is https
    list_display = ["name", "cohort", "slug", "utc_offset_minutes", "dissolved_at"]
    list_filter = ["cohort"]
    list_select_related = ["cohort__course"]
    search_fields = ["slug", "name"]
    readonly_fields = ["cohort", "number", "slug", "utc_offset_minutes", "created_at", "dissolved_at"]

    def has_add_permission(self, request):
        return False  # groups are formed, not typed in
