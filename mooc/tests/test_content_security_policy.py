"""The Content-Security-Policy header: strict on every public page, wider on the staff pages."""

import re
from pathlib import Path

import pytest

from signups.models import Enrollment
from signups.services import learner_links
from signups.tests.factories import EnrollmentFactory
from signups.tokens import confirmation_token

pytestmark = pytest.mark.django_db

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
PUBLIC_POLICY = {
    "default-src": "'self'",
    "base-uri": "'none'",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}
# What the policy would refuse in a page: a <script> without src, <style>, style="", onclick="", javascript: links.
INLINE_SCRIPT_OR_STYLE = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|javascript:", re.IGNORECASE)


def policy(response) -> dict[str, str]:
    """The response's Content-Security-Policy, directive by directive."""
    directives = (part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    return {name: sources for name, sources in directives}


def public_pages(client) -> dict[str, object]:
    pending = EnrollmentFactory(status=Enrollment.Status.PENDING, learner__confirmed_at=None)
    links = learner_links(EnrollmentFactory().learner)
    return {
        "home": client.get("/"),
        "signup refused": client.post("/signup/", {"email": "not an address", "consent": "on"}),
        "check your inbox": client.get("/signup/sent/"),
        "confirm": client.get(f"/confirm/{confirmation_token(pending.pk)}/"),
        "confirmed": client.post(f"/confirm/{confirmation_token(pending.pk)}/"),
        "a bad link": client.get("/confirm/garbage/"),
        "manage": client.get(links["manage"]),
        "erase": client.get(links["manage"] + "erase/"),
        "unsubscribe": client.get(links["unsubscribe"]),
    }


def test_every_public_page_has_the_strict_policy(client):
    for name, response in public_pages(client).items():
        assert response.status_code in (200, 400), name
        assert policy(response) == PUBLIC_POLICY, name


def test_the_admin_allows_inline_styles_and_pictures_for_its_email_previews(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.org", "a-long-test-password"))

    for path in ["/admin/login/", "/admin/", "/admin/signups/learner/"]:
        response = client.get(path, follow=True)
        assert response.status_code == 200, path
        assert policy(response) == PUBLIC_POLICY | {"style-src": "'self' 'unsafe-inline'", "img-src": "'self' data: https:"}, path


def test_the_development_outbox_has_the_staff_policy(client, settings, tmp_path):
    settings.DEBUG, settings.EMAIL_OUTBOX_DIR = True, tmp_path
    assert policy(client.get("/dev/outbox/"))["style-src"] == "'self' 'unsafe-inline'"


@pytest.mark.parametrize(
    "template",
    [TEMPLATES_DIR / "base.html", *sorted((TEMPLATES_DIR / "signups").glob("*.html")), *sorted((TEMPLATES_DIR / "groupmail").glob("*.html"))],
    ids=lambda path: path.name,
)
def test_public_templates_have_no_inline_script_or_style(template):
    assert not INLINE_SCRIPT_OR_STYLE.findall(template.read_text())
