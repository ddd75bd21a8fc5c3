from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from cohorts.forms import ExperimentStrategiesField, LinkListField
from cohorts.models import GROUP_FORMING_STRATEGIES, Cohort, CohortStatus, Course, GroupStrategy, StudyGroup, Week
from cohorts.selectors import cohort_groups_formed_at, cohort_groups_have_place_to_talk, cohort_has_groups, cohort_next_week_due
from cohorts.services import (
    WeekCountChange, cohort_close_signup, cohort_group_links_follow, cohort_lock, cohort_next_plan, cohort_start_next, course_week_count_change,
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
    experiment_strategies = ExperimentStrategiesField(
        GROUP_FORMING_STRATEGIES, label="Experiment's two strategies",
        help_text="For an experiment only: its learners are split at random between these two, each forming its own groups.",
    )

    class Meta:
        model = Cohort
        fields = "__all__"
        widgets = {"discussion_url_pattern": forms.TextInput(attrs={"size": 80})}

    def clean(self):
        cleaned = super().clean()
        if "group_strategy" in cleaned and cleaned["group_strategy"] != GroupStrategy.EXPERIMENT:
            cleaned["experiment_strategies"] = []  # a round that runs no experiment compares nothing
        if not self.instance._state.adding and self._strategy_changed(cleaned, self.instance):
            # The admin saves inside the transaction this form is checked in: locking the round
            # waits for a formation under way (it holds the same lock) and holds off one that
            # would start before the save, so the groups are seen here or formed by the new strategy.
            stored = cohort_lock(self.instance.pk)
            if cohort_has_groups(stored):
                self._refuse_strategy_change(cleaned, stored)
        return cleaned

    @staticmethod
    def _strategy_changed(cleaned, stored: Cohort) -> bool:
        # self.instance still holds the stored values while the form is cleaned (see clean_start_date).
        return ("group_strategy" in cleaned and cleaned["group_strategy"] != stored.group_strategy) or (
            "experiment_strategies" in cleaned and cleaned["experiment_strategies"] != (stored.experiment_strategies or [])
        )

    def _refuse_strategy_change(self, cleaned, stored: Cohort):
        formed_by = GroupStrategy(stored.group_strategy).label.lower()
        if stored.group_strategy == GroupStrategy.EXPERIMENT:
            formed_by += " between " + " and ".join(GroupStrategy(value).label.lower() for value in stored.experiment_strategies)
        refusal = (
            f"This round's groups are formed already ({formed_by}): how they are formed can no longer change, "
            "or its groups would be counted under a strategy that did not form them. "
            "To try another strategy, start the next round and choose it there."
        )
        if not self._strategy_changed(cleaned, stored):
            return  # changed by someone else in the meantime to what this form holds
        strategy_changed = "group_strategy" in cleaned and cleaned["group_strategy"] != stored.group_strategy
        self.add_error("group_strategy" if strategy_changed else "experiment_strategies", refusal)

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
        # Started from an object's own page (its action buttons): back there once done.
        "from_object_page": request.POST.get(FROM_OBJECT_PAGE) == "1",
        "from_object_page_field": FROM_OBJECT_PAGE,
    }
    return TemplateResponse(request, "admin/action_form.html", context)


FROM_OBJECT_PAGE = "_from_object_page"


def start_next_plan(cohort: Cohort, weeks_later: int, today) -> dict:
    """What "Start the next round" would create from `cohort`: the round (unsaved) and how its
    status follows from its dates, or the reason it cannot be created."""
    try:
        new = cohort_next_plan(cohort, weeks_later)
    except ValidationError as error:
        return {"cohort": cohort, "problem": " ".join(error.messages)}
    return {"cohort": cohort, "new": new, "status": CohortStatus(new.status_on(today)).label, "explained": round_status_explained(new, today)}


def round_status_explained(cohort: Cohort, today) -> str:
    """Why a new round has the status it has: its dates decide, nothing to switch on."""
    status = cohort.status_on(today)
    if status == CohortStatus.DRAFT:
        return (f"It is a Draft until its signup opens on {cohort.signup_opens_on:%A %-d %B %Y}: the home page offers it "
                "from then, by itself. Change its dates on its page if it should open sooner.")
    if status == CohortStatus.OPEN:
        return "Its signup window has begun: the home page offers it at once."
    return "Its dates have begun already."


def start_next_message(new: Cohort, today):
    url = reverse("admin:cohorts_cohort_change", args=[new.pk])
    return format_html(
        'Created <a href="{}">{}</a>, starting {} (signup {} to {}). {}', url, new.name, f"{new.start_date:%A %-d %B %Y}",
        f"{new.signup_opens_on:%-d %B}", f"{new.signup_closes_on:%-d %B %Y}", round_status_explained(new, today),
    )


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
    top: bool = False  # above the form (a warning), rather than below it


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
        ("Study groups", {"fields": [
            ("group_size_min", "group_size_target", "group_size_max"), "groups_form_on", "discussion_url_pattern",
            "group_strategy", "experiment_strategies", "reform_by_activity",
        ]}),
    ]
    readonly_fields = ["formation_seed"]
    actions = ["start_next_round", "close_signup"]
    # Filled by other apps at start-up (see CohortPageSection); class-level on purpose.
    page_sections: list[CohortPageSection] = []
    page_links: list[PageLink] = []  # see PageLink

    @admin.display(description="status")
    def status(self, cohort):
        return CohortStatus(cohort.status_on(timezone.now().date())).label

    @admin.display(description="seed (recorded at formation)")
    def formation_seed(self, cohort):
        return cohort.experiment_seed

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or obj.experiment_seed is None:
            return fieldsets
        # Once groups are formed: the seed they were formed (and an experiment split) with.
        return [
            (title, {**options, "fields": [*options["fields"], "formation_seed"]}) if title == "Study groups" else (title, options)
            for title, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        # How groups are formed is part of forming them: those who may not form groups see it only.
        if request.user.has_perm("cohorts.form_groups"):
            return self.readonly_fields
        return [*self.readonly_fields, "group_strategy", "experiment_strategies"]

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
                "groups_formed_at": cohort_groups_formed_at(cohort),
                # Worth a warning while the round has learners to talk; not once it is over.
                "groups_without_place_to_talk": status != CohortStatus.FINISHED and not cohort_groups_have_place_to_talk(cohort),
            }
            sections = [
                (section.top, {"title": section.title, "template": section.template, **section.context(cohort, today, request.user, request.GET)})
                for section in self.page_sections
            ]
            extra_context["cohort_sections"] = [context for top, context in sections if not top]
            extra_context["cohort_actions"] = self.page_actions(request, cohort)
            extra_context["from_object_page_field"] = FROM_OBJECT_PAGE
            extra_context["cohort_top_sections"] = [context for top, context in sections if top]
        return super().change_view(request, object_id, form_url, extra_context)

    def page_actions(self, request, cohort) -> list[tuple[str, str]]:
        """The list's actions as buttons on the cohort's own page: (name, label), only those the
        user's permissions allow (the list's own machinery checks them again when posted)."""
        hidden = {"delete_selected", *self.page_actions_hidden(cohort)}
        return [
            (name, str(description).removesuffix("…").strip())
            for name, (_, _, description) in self.get_actions(request).items() if name not in hidden
        ]

    @staticmethod
    def page_actions_hidden(cohort) -> set[str]:
        # Of a pair, the one that would change nothing.
        return {"pause_sending"} if cohort.sending_paused else {"resume_sending"}

    def response_action(self, request, queryset):
        """An action posted from a cohort's page (a button there) returns to that page."""
        response = super().response_action(request, queryset)
        selected = request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)
        if response is not None and response.status_code == 302 and request.POST.get(FROM_OBJECT_PAGE) == "1" and len(selected) == 1:
            return HttpResponseRedirect(reverse("admin:cohorts_cohort_change", args=[selected[0]]))
        return response

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "discussion_url_pattern" in form.changed_data:
            followed = cohort_group_links_follow(obj, old_pattern=form.initial.get("discussion_url_pattern") or "")
            if followed:
                self.message_user(request, f"{obj.name}: discussion links given to {followed} group{'s' if followed != 1 else ''}.")

    @admin_action(permission="cohorts.start_next_round", description="Start the next round (a copy, N weeks later)…")
    def start_next_round(self, request, queryset):
        """Asks how many weeks later, shows each new round's name and dates, and creates them only
        once the organizer has seen the dates for that number (the `previewed` field)."""
        form = StartNextRoundForm(request.POST if "weeks_later" in request.POST else None)
        cohorts = list(queryset.select_related("course"))
        weeks_later = form.cleaned_data["weeks_later"] if form.is_valid() else form.fields["weeks_later"].initial
        if form.is_valid() and "apply" in request.POST and request.POST.get("previewed") == str(weeks_later):
            for cohort in cohorts:
                try:
                    new = cohort_start_next(cohort, weeks_later)
                except ValidationError as error:
                    self.message_user(request, f"{cohort}: {' '.join(error.messages)}", messages.ERROR)
                else:
                    self.message_user(request, start_next_message(new, timezone.now().date()))
            return None
        return TemplateResponse(request, "admin/cohorts/cohort/start_next_round.html", {
            **self.admin_site.each_context(request),
            "title": "Start the next round", "opts": self.model._meta, "form": form, "weeks_later": weeks_later,
            "plans": [start_next_plan(cohort, weeks_later, timezone.now().date()) for cohort in cohorts],
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across") == "1",
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "from_object_page": request.POST.get(FROM_OBJECT_PAGE) == "1", "from_object_page_field": FROM_OBJECT_PAGE,
        })

    @admin_action(permission="cohorts.close_signup", description="Close signup now")
    def close_signup(self, request, queryset):
        today = timezone.now().date()
        closed = sum(cohort_close_signup(cohort, today) for cohort in queryset)
        self.message_user(request, f"Closed signup for {closed} cohort{'s' if closed != 1 else ''}.")


@admin.register(StudyGroup)
class StudyGroupAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # a typed link without one is https
    list_display = ["name", "cohort", "slug", "strategy", "utc_offset_minutes", "dissolved_at"]
    list_filter = ["cohort", "strategy"]
    list_select_related = ["cohort__course"]
    search_fields = ["slug", "name"]
    readonly_fields = ["cohort", "number", "slug", "strategy", "utc_offset_minutes", "created_at", "dissolved_at"]

    def has_add_permission(self, request):
        return False  # groups are formed, not typed in
