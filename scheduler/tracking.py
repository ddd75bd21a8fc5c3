"""What a course email tells its provider about itself: one tag, and the rest as metadata.

Anymail hands both to whichever provider (ESP) sends, and its tracking webhooks bring them
back. Each ESP takes them its own way, so both stay inside what every ESP the README names
accepts (scheduler/tests/test_esp_payloads.py sends through each):

- **One tag.** Postmark takes one tag, Mailjet one campaign, SparkPost one campaign_id, and
  Amazon SES one Message Tag (with AMAZON_SES_MESSAGE_TAG_NAME set): for more, Anymail raises
  AnymailUnsupportedFeature and nothing is sent. Only ASCII letters, digits, `_` and `-`
  (SES Message Tags and Resend's own tags allow no more), at most 64 of them (SparkPost's
  campaign_id; Mailgun allows 128, SES 256). It names the course's email,
  `gentle-python-week-3`, never the round or the learner: ESPs chart by tag, Mailjet makes a
  campaign of each, Mailgun limits how many distinct tags a domain has, so the number of tags
  must not grow with every round.
- **Metadata** for everything else: delivery (the ledger row), learner (public id), course,
  cohort, kind, week. At most 10 keys of at most 20 characters, string values of at most 80
  (Postmark's limits); strings only (SendGrid refuses numbers); ASCII only (Brevo refuses
  anything else in the header that carries them), which ids and slugs are. No key is a name SendGrid's events or Mailgun's legacy
  webhooks use for their own fields (event, email, category, tag, ...), or it would not come back.
"""

from scheduler.models import EmailKind

TAG_MAX_LENGTH = 64
METADATA_VALUE_MAX_LENGTH = 80


def delivery_tag(course_slug: str, kind: str, week_number: int) -> str:
    """The one tag of a course email: `<course>-week-<n>` for a week's email, `<course>-<kind>` for the others.

    Slugs are letters, digits, `_` and `-` already (SlugField); a long one is shortened so
    that the kind and week always fit.
    """
    suffix = f"-{kind}-{week_number}" if kind == EmailKind.WEEK else f"-{kind}"
    return course_slug[: TAG_MAX_LENGTH - len(suffix)] + suffix


def delivery_metadata(row) -> dict[str, str]:
    """The metadata of the email a ledger row sends (its cohort's course and its learner loaded).

    Tracking events find their row by `delivery`; the rest is for people reading the
    provider's dashboard, where a slug longer than 80 characters is cut short.
    """
    values = {
        "delivery": row.pk,
        "learner": row.learner.public_id,
        "course": row.cohort.course.slug,
        "cohort": row.cohort.slug,
        "kind": row.kind,
        "week": row.week_number,
    }
    return {key: str(value)[:METADATA_VALUE_MAX_LENGTH] for key, value in values.items()}
