from django.apps import AppConfig


class CohortsConfig(AppConfig):
    """Courses, weeks and their links; cohorts (rounds) and, later, their study groups."""

    name = "cohorts"
