from django import forms
from django.contrib import admin
from django.db import models

from cohorts.forms import LinkListField
from cohorts.models import Cohort, Course, Week


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


class CourseForm(forms.ModelForm):
    links = LinkListField()


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    form = CourseForm
    list_display = ["title", "slug", "week_count", "updated_at"]
    search_fields = ["title", "slug"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [WeekInline]


@admin.register(Cohort)
class CohortAdmin(admin.ModelAdmin):
    list_display = ["name", "course", "start_date", "signup_opens_on", "signup_closes_on"]
    list_filter = ["course"]
    list_select_related = ["course"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    date_hierarchy = "start_date"
