import pytest
from django.core.exceptions import ValidationError

from cohorts.forms import LinkListField


def test_links_round_trip_through_the_text_organizers_edit():
    field = LinkListField()
    links = [
        {"title": "Think Python, chapter 3", "url": "https://greenteapress.com/thinkpython/ch3"},
        {"title": "https://example.org/bare", "url": "https://example.org/bare"},
    ]

    text = field.prepare_value(links)

    assert text == "Think Python, chapter 3 | https://greenteapress.com/thinkpython/ch3\nhttps://example.org/bare"
    assert field.clean(text) == links


def test_blank_lines_and_spaces_are_ignored_and_a_title_may_contain_a_bar():
    field = LinkListField()
    assert field.clean("\n  A | B | https://example.org/ab  \n\n") == [{"title": "A | B", "url": "https://example.org/ab"}]
    assert field.clean("") == []


def test_every_bad_line_is_reported():
    with pytest.raises(ValidationError) as refusal:
        LinkListField().clean("Fine | https://example.org\nNo address |\njavascript:alert(1)")
    assert refusal.value.messages == [
        "Line 2: '' is not a web address (http:// or https://).",
        "Line 3: 'javascript:alert(1)' is not a web address (http:// or https://).",
    ]
