"""The signup form. Its field names are a public interface: partner sites post the same form."""

from django import forms

from cohorts.models import Cohort
from cohorts.selectors import cohort_by_slug
from signups.models import Experience, timezone_names


class SignupForm(forms.Form):
    email = forms.EmailField(label="Email address", max_length=254)
    first_name = forms.CharField(label="First name (optional)", max_length=100, required=False)
    timezone = forms.CharField(
        label="Your time zone",
        max_length=64,
        # The page adds "Detected from your browser." when static/js/timezone.js filled the field.
        help_text="Start typing a city to change it (e.g. Europe/Lisbon).",
    )
    experience = forms.ChoiceField(label="Programming experience", choices=Experience.choices, widget=forms.RadioSelect)
    wants_group = forms.ChoiceField(
        label="Would you like a study group?",
        choices=[("yes", "Yes, put me in a small study group"), ("no", "No, I will study on my own")],
        initial="yes",
        widget=forms.RadioSelect,
    )
    # A CharField, not a ChoiceField: a round that closed since the page loaded gets its own message.
    cohort = forms.CharField(label="Round", widget=forms.RadioSelect, required=False)
    consent = forms.BooleanField(
        label="I agree to receive the course emails (one a week, and a few about my study group). I can stop them at any time.",
        error_messages={"required": "Please agree to receive the course emails: the course happens by email."},
    )
    # A honeypot: hidden from people, filled in by bots. See SignupForm.is_bot.
    website = forms.CharField(required=False, label="Leave this empty")

    def __init__(self, *args, open_cohorts: list[Cohort], **kwargs):
        super().__init__(*args, **kwargs)
        self.open_cohorts = open_cohorts  # the choices: cohorts open for signup now, soonest first
        self.fields["cohort"].widget.choices = [
            (cohort.slug, f"{cohort.name}: starts {cohort.start_date:%A %-d %B %Y}") for cohort in open_cohorts
        ]
        if open_cohorts:
            self.fields["cohort"].initial = open_cohorts[0].slug

    @property
    def is_bot(self) -> bool:
        return bool(self.data.get("website"))

    def clean_email(self):
        return self.cleaned_data["email"].strip()

    def clean_first_name(self):
        return " ".join(self.cleaned_data["first_name"].split())

    def clean_timezone(self):
        name = self.cleaned_data["timezone"].strip()
        if name not in timezone_names():
            raise forms.ValidationError(f"“{name}” is not a time zone we know. Pick one from the list, e.g. America/Chicago.")
        return name

    def clean_cohort(self):
        slug = self.data.get("cohort", "").strip()
        if not slug:
            # No choice: the next round to start, or the waitlist when none is open.
            return self.open_cohorts[0] if self.open_cohorts else None
        for cohort in self.open_cohorts:
            if cohort.slug == slug:
                return cohort
        if cohort_by_slug(slug) is not None:
            raise forms.ValidationError("This round is full or no longer open for signup. Please choose another one.")
        raise forms.ValidationError("There is no such round. Please choose one of those listed.")

    def clean_wants_group(self):
        return self.cleaned_data["wants_group"] == "yes"


class AddressFixForm(forms.Form):
    """On the learner's page, after their address failed: the address that works now."""

    email = forms.EmailField(
        label="Your email address", max_length=254,
        help_text="The same one once your mailbox works again, or a new one: we send a link to a new one to confirm it.",
    )

    def clean_email(self):
        return self.cleaned_data["email"].strip()
