"""Admin forms for course content."""

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

LINK_SEPARATOR = " | "


class LinkListField(forms.Field):
    """A list of links edited as text, one per line: `Title | https://...` (or a bare URL).

    Stored as a JSON list of {"title", "url"}; each bad line is reported with its number.
    """

    widget = forms.Textarea(attrs={"rows": 3, "cols": 80})
    default_help_text = "One link per line: Title | https://… (a bare URL is its own title)."

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", self.default_help_text)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(
                link["url"] if link["title"] == link["url"] else f"{link['title']}{LINK_SEPARATOR}{link['url']}"
                for link in value
            )
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        links, errors = [], []
        validate_url = URLValidator(schemes=["http", "https"])
        for line_number, line in enumerate((value or "").splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            title, _, url = line.rpartition("|")
            title, url = title.strip(), url.strip()
            try:
                validate_url(url)
            except ValidationError:
                errors.append(f"Line {line_number}: {url!r} is not a web address (http:// or https://).")
                continue
            links.append({"title": title or url, "url": url})
        if errors:
            raise ValidationError(errors)
        return links

    def has_changed(self, initial, data):
        try:
            return self.to_python(initial or []) != self.to_python(data or "")
        except ValidationError:
            return True  # bad input is a change; clean() reports it


class ExperimentStrategiesWidget(forms.MultiWidget):
    """Two drop-downs, strategy a and strategy b, for the JSON list of an experiment's two strategies."""

    def __init__(self, choices=(), attrs=None):
        super().__init__([forms.Select(choices=choices), forms.Select(choices=choices)], attrs)

    def decompress(self, value):
        chosen = list(value) if isinstance(value, list | tuple) else []
        return (chosen + ["", ""])[:2]


class ExperimentStrategiesField(forms.MultiValueField):
    """An experiment's two strategies, chosen from `choices`, stored as a list ["a", "b"].

    Blanks are dropped, so that the model's own check (Cohort.clean) names what is missing.
    """

    def __init__(self, choices, **kwargs):
        choices = [("", "---------"), *choices]
        fields = [forms.ChoiceField(choices=choices, required=False), forms.ChoiceField(choices=choices, required=False)]
        kwargs.setdefault("required", False)
        super().__init__(fields, widget=ExperimentStrategiesWidget(choices=choices), require_all_fields=False, **kwargs)

    def compress(self, data_list):
        return [value for value in data_list or [] if value]
