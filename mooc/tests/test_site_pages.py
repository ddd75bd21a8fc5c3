"""The pages every visitor can meet whatever the app: the icon, and the not-found and error pages (DEBUG off)."""

import html
import re

import pytest
from django.contrib.staticfiles import finders
from django.template import Context
from django.template.base import VariableNode
from django.template.loader import get_template
from django.template.loader_tags import BlockNode
from django.templatetags.static import static
from django.test import RequestFactory
from django.views.defaults import server_error


def test_favicon_ico_is_answered_by_the_static_file(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"] == static("favicon.ico") != "/favicon.ico"
    assert finders.find("favicon.ico"), "static/favicon.ico is there for collectstatic"


@pytest.mark.django_db
def test_every_page_names_its_icon_and_has_a_description(client):
    page = client.get("/").content.decode()

    assert 'rel="icon"' in page and "favicon.svg" in page
    assert '<meta name="description" content="' in page


# The pages a learner reaches from an email: each says what it is for, for a search engine or a
# link preview, and never anything about the learner it is shown to.
PAGES_WITH_A_DESCRIPTION = [
    "signups/manage.html", "groupmail/group_page.html", "signups/checkin.html",
    "signups/signup_sent.html", "signups/confirm.html", "signups/confirmed.html",
]


def description_block(name: str) -> BlockNode:
    [block] = [node for node in get_template(name).template.nodelist.get_nodes_by_type(BlockNode) if node.name == "description"]
    return block


@pytest.mark.parametrize("name", PAGES_WITH_A_DESCRIPTION)
def test_each_learner_page_has_a_short_description_of_its_own_without_learner_data(name):
    block = description_block(name)
    text = block.nodelist.render(Context()).strip()
    default = description_block("base.html").nodelist.render(Context()).strip()

    assert not block.nodelist.get_nodes_by_type(VariableNode), "fixed words only: no variable can carry a learner's data"
    assert 50 <= len(text) <= 160 and text != default
    assert '"' not in text and "<" not in text


def test_the_descriptions_are_all_different():
    texts = [description_block(name).nodelist.render(Context()) for name in PAGES_WITH_A_DESCRIPTION]
    assert len(set(texts)) == len(texts)


@pytest.mark.django_db
def test_a_page_shows_its_own_description_in_its_head(client):
    page = client.get("/signup/sent/").content.decode()

    [content] = re.findall(r'<meta name="description" content="([^"]*)">', page)
    assert html.unescape(content) == description_block("signups/signup_sent.html").nodelist.render(Context())


@pytest.mark.django_db
def test_the_not_found_page_is_the_sites_own(client, settings):
    settings.DEBUG = False

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    page = response.content.decode()
    assert "We could not find that page" in page and "site-header" in page and 'href="/"' in page


def test_the_error_page_is_the_sites_own_and_needs_no_request_context(settings):
    settings.DEBUG = False

    # As Django calls it when a view raised: the template gets an empty context.
    response = server_error(RequestFactory().get("/"))

    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on our side" in page and "site-header" in page and "css/site.css" in page
