from django.apps import AppConfig


class SignupsConfig(AppConfig):
    """Learners: the home page and signup, confirmation, self-service, suppression."""

    name = "signups"
