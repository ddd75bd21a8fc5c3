"""Staff templates cannot hurt workers: every bomb is refused on save at its line, the limits
are counted as a render goes (never after), the save check's samples are as big as real
learners' data, and ordinary templates keep working.

How long each refusal takes is measured by bench/bench_template_check.py, not here.
"""

import math

import pytest

from scheduler import sandbox, templating
from scheduler.models import EmailTemplate
from scheduler.selectors import sample_contexts
from scheduler.services import template_version_save
from scheduler.tests.helpers import readable_context
from scheduler.templating import TemplateProblem, email_check

OPERATION = f"one operation would make {{size}} characters (or list items); at most {sandbox.OPERATION_MAX:,}"
NUMBER = f"one operation would make a number of more than {sandbox.NUMBER_DIGITS_MAX} digits"
STEPS = f"it took more than {sandbox.STEPS_MAX:,} steps"
OUTPUT = f"it produced more than {sandbox.OUTPUT_MAX // 1024} KiB"
BILLION = OPERATION.format(size="1,000,000,000")
PAST_OPERATION = f"one operation would make more than {sandbox.OPERATION_MAX:,} characters (or list items)"  # counted no further


def refusal(body: str) -> TemplateProblem:
    """The save check's refusal of an email whose body starts "Hello", a blank line, then `body` (line 3 on)."""
    with pytest.raises(TemplateProblem) as refused:
        email_check("Hi", f"Hello\n\n{body}\n", sample_contexts())
    return refused.value


def link_length() -> int:
    return len(sample_contexts()[0]["links"]["manage"])


FIVE_LOOPS = "".join(f"{{% for {name} in links.manage %}}" for name in "abcde") + "x" + "{% endfor %}" * 5


@pytest.mark.parametrize(
    "body, message",
    [
        ("{{ '%1000000000d' % 1 }}", BILLION),
        ("{{ '%.1000000000f' % 1.5 }}", BILLION),
        ("{{ '%((n))1000000000d' % {'(n)': 1} }}", BILLION),  # a key with brackets in it, read as Python reads it
        ("{{ '%*d' % (10**9, 1) }}", "a width or precision taken from the arguments (*) is not allowed"),
        ("{{ 'a'*10**9 }}", BILLION),
        ("{{ 10**9 * links.manage }}", OPERATION.format(size=f"{link_length() * 10**9:,}")),
        ("{{ learner.first_name.ljust(10**9) }}", BILLION),
        ("{{ learner.first_name.center(10**9) }}", BILLION),
        ("{{ learner.first_name.zfill(10**9) }}", BILLION),
        ("{{ ('\t' * 100).expandtabs(1000) }}", OPERATION.format(size="100,100")),
        ("{{ '{:>1000000000}'.format(1) }}", BILLION),
        ("{{ '{:>{}}'.format(1, 10**9) }}", BILLION),
        ("{{ '{n:>1000000000}'.format_map({'n': 1}) }}", BILLION),
        ("{{ ('x' * 1000).replace('x', links.manage) }}", OPERATION.format(size=f"{1000 * link_length():,}")),
        ("{{ links.manage.join(links.manage * 50) }}", OPERATION.format(size=f"{50 * link_length() * (link_length() + 1) - link_length():,}")),
        ("{{ (links.manage * 50)|join(links.manage) }}", OPERATION.format(size=f"{50 * link_length() * (link_length() + 1) - link_length():,}")),
        ("{{ (1).to_bytes(10**9, 'big') }}", BILLION),
        ("{{ [links.manage] * 100 }}", OPERATION.format(size=f"{100 * (link_length() + 1):,}")),
        ("{{ 9**9**9 }}", NUMBER),
        (FIVE_LOOPS, STEPS),
        ("{% for a in links.manage %}{% for b in links.manage %}{{ links.manage }}{% endfor %}{% endfor %}", OUTPUT),
        ("{% macro f() %}{{ f() }}{{ f() }}{% endmacro %}{{ f() }}", "templates cannot define macros"),
        ("{% call learner.first_name.upper() %}x{% endcall %}", "templates cannot define macros"),
        ("{% for link in week.readings recursive %}{{ loop(week.readings) }}{% endfor %}", "recursive loops are not available"),
    ],
    ids=lambda value: value if len(value) < 40 else value[:37] + "...",
)
def test_a_one_line_bomb_is_refused_at_its_line_with_the_limit_it_broke(body, message):
    refused = refusal(body)

    assert (refused.field, refused.line) == ("body", 3)
    assert message in str(refused), str(refused)


def test_a_bomb_in_the_subject_is_refused_there():
    with pytest.raises(TemplateProblem) as refused:
        email_check("{{ 'a' * 10**9 }}", "Hello\n", sample_contexts())

    assert (refused.value.field, refused.value.line) == ("subject", 1)
    assert BILLION in str(refused.value)


@pytest.mark.parametrize("operator", ["~", "+"])
def test_doubling_with_set_line_after_line_is_refused_where_it_passes_the_limit(operator):
    lines = ["{% set a = links.manage %}"] + [f"{{% set a = a {operator} a %}}"] * 20 + ["{{ a }}"]
    # The link doubles on every line (line 4 on) until it is longer than one operation may make.
    doublings = math.ceil(math.log2(sandbox.OPERATION_MAX / link_length()))

    refused = refusal("\n".join(lines))

    assert refused.line == 3 + doublings
    assert OPERATION.format(size=f"{link_length() * 2**doublings:,}") in str(refused)


@pytest.mark.parametrize(
    "lines, made",
    [
        # format() stops at its first field: the format's own 9,000 characters, then the value.
        (["{% set f = '{0}' * 3000 %}", "{{ f.format(links.manage * 90) }}"], lambda link: 9000 + 90 * link),
        # % is refused from its estimate: 2,000 conversions as long as the longest value.
        (["{% set f = '%(a)s' * 2000 %}", "{{ f % {'a': links.manage * 90} }}"], lambda link: 10_000 + 2000 * 90 * link),
        # ~ adds up its pieces before joining them: it stops at the second of five.
        (["{% set a = links.manage * 90 %}", "{{ a ~ a ~ a ~ a ~ a }}"], lambda link: 2 * 90 * link),
    ],
    ids=["format", "percent", "concat"],
)
def test_a_small_format_over_a_long_value_is_refused_before_it_is_made(lines, made):
    refused = refusal("\n".join(lines))

    assert refused.line == 4
    assert OPERATION.format(size=f"{made(link_length()):,}") in str(refused)


def test_a_body_longer_than_any_email_needs_is_refused():
    with pytest.raises(TemplateProblem) as refused:
        email_check("Hi", "x" * (templating.BODY_MAX_LENGTH + 1), sample_contexts())

    assert str(refused.value) == f"the email is {templating.BODY_MAX_LENGTH + 1:,} characters long; at most {templating.BODY_MAX_LENGTH:,}"


def test_nesting_a_list_in_itself_line_after_line_is_refused_before_it_prints_exponentially():
    lines = ["{% set a = [links.manage] %}"] + ["{% set a = [a, a] %}"] * 40 + ["{{ a }}"]
    size, nestings = 1 + link_length(), 0  # a list counts its items and everything in them
    while size <= sandbox.OPERATION_MAX:
        size, nestings = 2 + 2 * size, nestings + 1

    refused = refusal("\n".join(lines))

    assert refused.line == 3 + nestings
    assert PAST_OPERATION in str(refused)


def test_text_captured_by_set_blocks_counts_against_the_output_as_it_is_captured():
    lines = ["{% set a %}{{ links.manage }}{% endset %}"] + ["{% set a %}{{ a }}{{ a }}{% endset %}"] * 30 + ["{{ a|length }}"]
    # What the blocks have captured after the k-th doubling: the link, then twice each block before.
    captured, doublings = link_length(), 0
    while len("Hello\n\n") + captured <= sandbox.OUTPUT_MAX:
        doublings += 1
        captured += 2 * link_length() * 2 ** (doublings - 1)

    refused = refusal("\n".join(lines))

    assert refused.line == 3 + doublings
    assert OUTPUT in str(refused)


def test_numbers_multiplied_line_after_line_are_refused_past_the_digits_allowed():
    lines = ["{% set n = 99999999 %}"] + ["{% set n = n * n %}"] * 10 + ["{{ n }}"]

    refused = refusal("\n".join(lines))

    assert refused.line == 5  # 8 digits, then 16 on line 4, then 32 on line 5
    assert NUMBER in str(refused)


@pytest.mark.parametrize(
    "body",
    [
        "".join(f"{{% for a{n} in week.readings %}}" for n in range(25)) + "x" + "{% endfor %}" * 25,  # Python's block limit
        "{% if group %}" * 100 + "x" + "{% endif %}" * 100,  # Python's indentation limit
        "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",  # the parser's recursion
    ],
    ids=["25 nested loops", "100 nested ifs", "3000 brackets"],
)
def test_a_template_nested_too_deeply_to_compile_is_refused_not_a_crash(body):
    assert "the template nests too deeply to compile" in str(refusal(body))


def test_the_output_is_counted_while_it_is_generated_not_after():
    pulled = []
    numbers = (pulled.append(number) or number for number in range(10**4))  # 10 MB, were it joined first
    template = templating._TEXT.from_string("{% for n in numbers %}{{ piece }}{% endfor %}")

    with pytest.raises(sandbox.RenderLimitExceeded, match=OUTPUT):
        sandbox.render_bounded(template, {"numbers": numbers, "piece": "x" * 1000}, deadline=math.inf, over_time="")

    assert len(pulled) == sandbox.OUTPUT_MAX // 1000 + 1  # the loop stopped at the turn that passed the limit


def test_the_save_check_stops_at_its_time_budget(render_clock):
    body = "{% for character in links.manage %}.{% endfor %}"
    email_check("Hi", f"Hello\n\n{body}\n", sample_contexts())  # passes while the clock stands still

    render_clock.tick = sandbox.CHECK_SECONDS_MAX / 50  # the budget is spent after about 50 loop turns

    refused = refusal(body)
    assert refused.line == 3
    assert f"checking it for the sample learners took longer than {sandbox.CHECK_SECONDS_MAX:g} seconds" in str(refused)


def test_a_render_at_send_time_stops_at_its_deadline(render_clock):
    from types import SimpleNamespace

    from scheduler.services import email_render

    unsaved = SimpleNamespace(pk=None, subject="Hi", body="{% for c in learner.first_name %}.{% endfor %}",
                              body_html="{% for c in learner.first_name %}.{% endfor %}")
    render_clock.tick = 1.0  # a second per loop turn

    with pytest.raises(sandbox.RenderLimitExceeded, match=f"it took longer than {sandbox.RENDER_SECONDS_MAX:g} seconds"):
        email_render(unsaved, readable_context(), "week; cohort=test; week=1; id=1")


def test_a_refused_bomb_leaves_the_last_good_version_in_force(course):
    template = EmailTemplate.objects.get(course=course, cohort=None, kind="week", week_number=2)
    good = template.current_version

    with pytest.raises(TemplateProblem):
        template_version_save(template, "Week 2", "Hello\n\n{{ learner.first_name.ljust(10**9) }}\n")

    template.refresh_from_db()
    assert template.current_version == good and template.versions.count() == 1


# --- What ordinary templates may still do ------------------------------------------------------------


def test_operations_within_the_limits_work_as_in_python():
    body = (
        ">{{ '{:>3}'.format(week.number) }}|{{ learner.first_name.ljust(5, '.') }}|{{ '%02d' % week.number }}|"
        "{{ week.readings|join(', ', attribute='title') }}|{{ (week.readings + week.exercises)|length }}|"
        "{{ week.number * 7 }}|{{ 2 ** 10 }}|{{ [learner.first_name, course.title]|join(' of ') }}\n"
        "{% for link in week.readings + week.exercises %}\n- {{ link.title }}\n{% endfor %}\n"
    )
    email_check("Week {{ week.number }}", body, sample_contexts())  # passes with the longest samples

    from types import SimpleNamespace

    from scheduler.services import email_render

    unsaved = SimpleNamespace(pk=None, subject="Hi", body=body, body_html=templating.markdown_to_html_template(body))
    email = email_render(unsaved, readable_context(), "week; cohort=test; week=1; id=1")

    # The body's first line is a Markdown quote: "> " opens it in the text part.
    assert email.text.startswith(">   3|Ada..|03|A link|2|21|1024|Ada of A Course\n\n- A link\n- A link\n")


def test_the_demo_courses_default_emails_pass_the_check(course):
    templates = EmailTemplate.objects.filter(course=course, cohort=None).select_related("current_version")

    for template in templates:
        email_check(template.current_version.subject, template.current_version.body, sample_contexts())

    assert templates.count() == course.week_count + 3  # every week, welcome, group introduction, course end


# --- The save check's samples --------------------------------------------------------------------------


def test_the_samples_links_are_as_long_as_a_real_learners_and_open_nothing(db):
    from signups.services import learner_links
    from signups.tests.factories import LearnerFactory
    from signups.tokens import TokenInvalid, learner_token_read

    from cohorts.models import MAX_COURSE_WEEKS
    from signups.checkins import checkin_links
    from signups.tokens import checkin_token_read

    learner = LearnerFactory()
    # A week's check-in links as long as they get: the largest round id, the last possible week.
    real = learner_links(learner) | checkin_links(learner.public_id, 2**31 - 1, MAX_COURSE_WEEKS)
    sample = sample_contexts()[0]["links"]

    assert {name: len(link) for name, link in sample.items()} == {name: len(link) for name, link in real.items()}
    made_up = sample["manage"].rstrip("/").rsplit("/", 1)[1]
    assert made_up.startswith("sample-")
    with pytest.raises(TokenInvalid):
        learner_token_read(made_up)
    made_up_checkin = sample["checkin_done"].removesuffix("/done/").rsplit("/", 1)[1]
    assert made_up_checkin.startswith("sample-")
    with pytest.raises(TokenInvalid):
        checkin_token_read(made_up_checkin)


def test_the_samples_are_as_big_as_real_learners_data_gets():
    from cohorts.models import Cohort, Week
    from signups.models import Learner

    with_group, without_group = sample_contexts()

    assert len(with_group["group"]["members"]) + 1 == Cohort().group_size_max  # a full group: the learner and the others
    assert len(with_group["learner"]["first_name"]) == Learner._meta.get_field("first_name").max_length
    for member in with_group["group"]["members"]:
        assert len(member["first_name"]) == Learner._meta.get_field("first_name").max_length
    for link in with_group["week"]["readings"] + with_group["week"]["exercises"]:
        assert len(link["url"]) == Week._meta.get_field("lecture_url").max_length
    assert without_group["group"] is None and without_group["week"]["readings"] == []
