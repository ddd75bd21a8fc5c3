"""Staff-written email templates: Markdown with Jinja2 variables, sandboxed, compiled once.

Staff are trusted to write the course's words, not to run code: templates are rendered by
Jinja2's ImmutableSandboxedEnvironment with limits on what a render may cost (scheduler/sandbox.py),
see only the documented variables (plain data, no models, no settings), may use only the
documented filters, and cannot include, import or extend other templates, nor define macros.
The site's own pages stay on Django templates.

A template version is prepared once (`email_compile`, cached by version id):
- the subject is a one-line text template;
- the text part is the Markdown converted once to plain text written for reading (links as
  "text: URL", headings underlined, no emphasis markers), template tags kept intact the same
  way, followed by the footer's links as text (the HTML has them in the layout);
- the HTML part is the Markdown converted to HTML once, template tags kept intact (they are
  set aside before conversion and put back after), with inline styles for mail clients,
  inside the shared layout. Rendering it per learner is then a plain Jinja2 render.
"""

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from scheduler import sandbox
from scheduler.sandbox import EmailEnvironment, bounded_join, deadline_after, render_bounded

SUBJECT_MAX_LENGTH = 200
# A body is compiled in every worker and its text bounds much of what a render can do at once:
# emails are a few thousand characters; this is far more than any needs.
BODY_MAX_LENGTH = 100_000

# The variables a template may use, with what they mean: shown beside the editor.
VARIABLES = [
    ("learner.first_name", "The learner's first name, or “there” when they gave none."),
    ("learner.timezone", "Their time zone, e.g. Europe/Lisbon."),
    ("learner.dropped_back_from", "The round they dropped back (or were moved) from into this one; else empty."),
    ("course.title", "The course's title."),
    ("course.week_count", "How many weeks the course has."),
    ("cohort.name", "The learner's round, e.g. Round 2."),
    ("cohort.start_date", "When the round started or starts, e.g. Monday 30 November 2026."),
    ("cohort.current_week", "The round's week when the email is sent: 0 before it starts, then 1, 2, … "
     "(a welcome or group introduction may reach a learner who joins mid-course)."),
    ("week.number", "This week's number (weekly emails)."),
    ("week.title", "This week's title."),
    ("week.is_last", "True in the course's last week."),
    ("week.lecture.title, week.lecture.url", "This week's lecture; empty when the week has none."),
    ("week.readings", "A list of links (each with .title and .url); empty when none."),
    ("week.exercises", "A list of links (each with .title and .url); empty when none."),
    ("week.project.title, week.project.url", "This week's project; empty when the week has none."),
    ("week.discussion.title, week.discussion.url", "The week's discussion space."),
    ("group", "The learner's study group; empty when they have none (use {% if group %})."),
    ("group.name, group.discussion_url", "The group's name and where it talks: the round's group discussion link, "
     "else the group's page here."),
    ("group.page_url", "The group's page here, for members only: who is in it and the messages relayed so far."),
    ("group.members", "The other members: a list, each with .first_name and .timezone."),
    ("group.email", "The group's own email address (group mail); empty when group mail is off. Weekly emails to a "
     "grouped learner then have it as their Reply-To: replying writes to the group."),
    ("group.moved_from", "The group the learner was in before re-forming moved them this week; else empty."),
    ("links.manage", "The learner's own page: switch rounds, pause, leave, their data."),
    ("links.switch", "Straight to dropping back to the next round."),
    ("links.unsubscribe", "Unsubscribe from every email."),
    ("links.site", "The site's home page."),
    ("links.checkin_done, links.checkin_behind, links.checkin_stuck", "The week's check-in links: “I did this week”, "
     "“I'm behind”, “I'm stuck”. Each opens a page with one button that records the answer (changeable until the "
     "next week's email), then helps: dropping back to the next round, telling the group. Empty in an email about no week."),
    ("checkin.last", "The learner's last check-in in this round, for a week before this email's week; empty when they "
     "gave none (use {% if checkin.last %}). Its .week is the week's number, its .answer one of done, behind, stuck."),
]
TOP_LEVEL_VARIABLES = frozenset({"learner", "course", "cohort", "week", "group", "links", "checkin"})
# Names Jinja2 itself provides inside blocks: loop.first, loop.last, loop.index in a {% for %}.
BLOCK_VARIABLES = frozenset({"loop"})
FILTERS = ("default", "upper", "lower", "title", "capitalize", "length", "join", "first", "last", "truncate", "trim")


def _limits() -> list[tuple[str, str]]:
    """What a template may cost, shown beside the editor (read from scheduler.sandbox's values)."""
    return [
        ("One operation", f"makes at most {sandbox.OPERATION_MAX:,} characters (or list items): repeating with *, "
         "% and format() widths and precisions, padding (ljust, rjust, center, zfill, expandtabs), replace, join, ~."),
        ("Numbers", f"have at most {sandbox.NUMBER_DIGITS_MAX} digits (9**9**9 is refused)."),
        ("Length", f"the body as written is at most {BODY_MAX_LENGTH:,} characters; the subject, the text and the "
         f"HTML sent are each at most {sandbox.OUTPUT_MAX // 1024} KiB ({sandbox.OUTPUT_MAX:,} characters), "
         "counting text captured with {% set %}…{% endset %}."),
        ("Steps", f"each of them takes at most {sandbox.STEPS_MAX:,} steps: a turn of a {{% for %}} loop, a call "
         "and a calculation are a step each. Loops inside loops over learners' data add up fast."),
        ("Time", f"an email renders in at most {sandbox.RENDER_SECONDS_MAX:g} seconds when it is sent; the check "
         f"on saving renders it for every sample learner within {sandbox.CHECK_SECONDS_MAX:g} seconds."),
        ("Not available", "macros and call blocks ({% macro %}, {% call %}), recursive loops, include, import, extends."),
        ("The check", "Saving renders the email for made-up learners whose names, links and titles are as long as "
         "real ones can be, in a full study group and a week with several readings and exercises. A template that "
         "breaks a limit is refused with its line; the last good version stays in force."),
    ]


LIMITS = _limits()


class TemplateProblem(Exception):
    """A template that cannot be saved: `field` (subject or body), `line` and a message for staff."""

    def __init__(self, field: str, message: str, line: int | None = None):
        self.field, self.line = field, line
        super().__init__(f"Line {line}: {message}" if line else message)


def _environment(autoescape: bool, undefined=Undefined) -> EmailEnvironment:
    environment = EmailEnvironment(autoescape=autoescape, undefined=undefined, trim_blocks=True, lstrip_blocks=True, loader=None)
    environment.filters = {name: environment.filters[name] for name in FILTERS} | {"join": bounded_join}
    environment.tests = {name: environment.tests[name] for name in ("defined", "undefined", "none", "number", "string")}
    environment.globals = {}
    return environment


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)
_TEXT_STRICT = _environment(autoescape=False, undefined=StrictUndefined)
_HTML_STRICT = _environment(autoescape=True, undefined=StrictUndefined)

# --- Markdown to an HTML template, once per version ------------------------------------------

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_TAG = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.DOTALL)
_PLACEHOLDER = "JINJAPLACEHOLDER{}X"
_STYLES = {
    "p": "margin:0 0 16px;",
    "h1": "margin:0 0 16px;font-size:24px;line-height:1.3;",
    "h2": "margin:24px 0 12px;font-size:20px;line-height:1.3;",
    "h3": "margin:20px 0 8px;font-size:17px;line-height:1.3;",
    "ul": "margin:0 0 16px;padding-left:24px;",
    "ol": "margin:0 0 16px;padding-left:24px;",
    "li": "margin:0 0 6px;",
    "a": "color:#0b5cad;text-decoration:underline;word-break:break-word;",
    "blockquote": "margin:0 0 16px;padding:4px 12px;border-left:4px solid #d5dade;color:#50575e;",
    "code": "font-family:Menlo,Consolas,monospace;font-size:14px;background:#f4f6f8;padding:1px 4px;",
    "hr": "border:0;border-top:1px solid #d5dade;margin:24px 0;",
}
_LAYOUT = (Path(__file__).resolve().parent.parent / "templates" / "scheduler" / "email" / "layout.html").read_text()


def _tags_set_aside(body: str) -> tuple[str, list[str]]:
    """The body with each Jinja2 tag replaced by a placeholder Markdown leaves alone, and the tags.

    A block tag alone on its line ({% if %}, {% for %}) becomes its own block, so what it
    wraps (a heading, a list) appears or disappears whole.
    """
    tags: list[str] = []

    def set_aside(match):
        tags.append(match.group(0))
        return _PLACEHOLDER.format(len(tags) - 1)

    lines = []
    for line in body.splitlines():
        stripped = line.strip()
        alone = _TAG.fullmatch(stripped) and not stripped.startswith("{{")
        lines.append(f"\n{_TAG.sub(set_aside, stripped)}\n" if alone else _TAG.sub(set_aside, line))
    return "\n".join(lines), tags


def markdown_to_html_template(body: str) -> str:
    """Convert a Markdown body to HTML, keeping its Jinja2 tags intact, with inline styles."""
    source, tags = _tags_set_aside(body)
    html = _MARKDOWN.render(source)
    for index, tag in enumerate(tags):
        placeholder = _PLACEHOLDER.format(index)
        html = html.replace(f"<p>{placeholder}</p>\n", tag).replace(placeholder, tag)
    for tag, style in _STYLES.items():
        html = re.sub(rf"<{tag}(?=[\s>])", f'<{tag} style="{style}"', html)
    return html


# --- Markdown to a plain-text template, once per version ---------------------------------------
#
# Written for reading in a mail client that shows no HTML: links as "text: URL" (the URL whole,
# never wrapped, so it can be copied), headings on their own line underlined with = or -, no
# emphasis markers, lists as "- item", paragraphs apart by a blank line, a line break where the
# author put one. Built from markdown-it's syntax tree at compile time, so a learner's render is
# a plain Jinja2 render as for the HTML; values a learner gives are put in as typed, as in the HTML.

_PLACEHOLDER_FOUND = re.compile(r"JINJAPLACEHOLDER(\d+)X")
_BLANK_LINES = re.compile(r"\n{3,}")
# A heading whose words come from a template tag is underlined after rendering, when its length is known.
_UNDERLINE_LATER = "\x1e"
_UNDERLINE = re.compile(rf"^(.*)\n{_UNDERLINE_LATER}([=-])$", re.MULTILINE)
# Markdown unescapes \{ to {: text must not become a template tag that was not one in the body.
_TAG_OPENING = re.compile(r"\{(?=[{%#])")


class _TextWriter:
    def __init__(self, tags: list[str]):
        self.tags = tags

    def restored(self, text: str) -> str:
        return _PLACEHOLDER_FOUND.sub(lambda match: self.tags[int(match.group(1))], text)

    def block_tag(self, node: SyntaxTreeNode) -> str | None:
        """The tag, when the block is a paragraph that is only a block tag alone on its line."""
        if node.type != "paragraph":
            return None
        match = _PLACEHOLDER_FOUND.fullmatch(node.children[0].content.strip()) if node.children else None
        return self.tags[int(match.group(1))] if match and not self.tags[int(match.group(1))].startswith("{{") else None

    def blocks(self, nodes, separator: str) -> str:
        """The blocks apart by `separator` ("\n\n": a blank line), lines on the margin of the first.

        A block tag alone on its line stands with no line of its own, so what it wraps appears
        or disappears whole. A list ends with one newline and every other block stands between
        separators: a {% for %} around a list item then repeats the item as a list's next line,
        and the blank lines left over are collapsed, here and after rendering. The separator
        before a block is doubled because trim_blocks takes the newline after a block tag.
        """
        text, previous = "", None
        for node in nodes:
            tag = self.block_tag(node)
            if tag is not None:
                text += tag
            elif node.type in ("bullet_list", "ordered_list"):
                # Two lists one after the other in the body (a bullet list after a numbered one) stay apart.
                text += (separator if previous in ("bullet_list", "ordered_list") else "") + self.block(node) + "\n"
            else:
                text += separator * 2 + self.block(node) + separator
            previous = "tag" if tag is not None else node.type
        return _BLANK_LINES.sub("\n\n", text).strip("\n")

    def block(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind == "paragraph":
            return self.inline(node.children[0]) if node.children else ""
        if kind == "heading":
            words = self.inline(node.children[0])
            mark = "=" if node.tag == "h1" else "-"
            if _PLACEHOLDER_FOUND.search(words) or "{" in words:
                return f"{words}\n{_UNDERLINE_LATER}{mark}"
            return f"{words}\n{mark * len(words)}"
        if kind in ("bullet_list", "ordered_list"):
            start = int(node.attrs.get("start", 1)) if kind == "ordered_list" else 0
            items = []
            for number, item in enumerate(node.children, start):
                marker = f"{number}. " if kind == "ordered_list" else "- "
                loose = any(child.type == "paragraph" and not child.hidden for child in item.children)
                inside = self.blocks(item.children, "\n\n" if loose else "\n")
                items.append(marker + inside.replace("\n", "\n" + " " * len(marker)))
            return "\n".join(items)
        if kind == "blockquote":
            return "\n".join(f"> {line}".rstrip() for line in self.blocks(node.children, "\n\n").split("\n"))
        if kind in ("code_block", "fence"):
            return "\n".join(f"    {line}" for line in _TAG_OPENING.sub("{{ '{' }}", node.content).rstrip("\n").split("\n"))
        if kind == "hr":
            return "----"
        return _TAG_OPENING.sub("{{ '{' }}", node.content or "")

    def inline(self, node: SyntaxTreeNode) -> str:
        text = ""
        for child in node.children:
            kind = child.type
            if kind in ("text", "code_inline", "html_inline"):
                text += _TAG_OPENING.sub("{{ '{' }}", child.content)
            elif kind in ("softbreak", "hardbreak"):
                text += "\n"
            elif kind == "link":
                text += self.link(self.inline(child), child.attrs.get("href", ""))
            elif kind == "image":
                text += self.link(child.content, child.attrs.get("src", ""))
            else:  # strong, em, s: their words without the markers
                text += self.inline(child)
        return text

    def link(self, words: str, url: str) -> str:
        shown, target = self.restored(words).strip(), self.restored(url)
        if target.startswith("mailto:"):  # an address reads as itself
            return words if shown == target.removeprefix("mailto:") else f"{words}: {url.removeprefix('mailto:')}"
        return url if not shown or shown == target else f"{words}: {url}"


def markdown_to_text_template(body: str) -> str:
    """Convert a Markdown body to plain text written for reading, keeping its Jinja2 tags intact."""
    source, tags = _tags_set_aside(body)
    writer = _TextWriter(tags)
    return writer.restored(writer.blocks(SyntaxTreeNode(_MARKDOWN.parse(source)).children, "\n\n")) + "\n"


# Every course email's text ends with the links the HTML layout's footer has ("-- " opens a signature).
_TEXT_FOOTER = "\n".join([
    "",
    "-- ",
    "You get this email because you joined {{ course.title }} on Mechanical MOOC.",
    "Manage your enrollment: {{ links.manage }}",
    "Drop back to the next round: {{ links.switch }}",
    "Unsubscribe: {{ links.unsubscribe }}",
    "",
])


# --- Checking and compiling ---------------------------------------------------------------------


def _syntax_problem(field: str, error: TemplateSyntaxError) -> TemplateProblem:
    return TemplateProblem(field, error.message or "the template does not compile", error.lineno)


def _source_problems(field: str, source: str, environment) -> list[TemplateProblem]:
    """Every problem a part's source shows before it is rendered, by line: a syntax error (then
    nothing else can be read), or each include, macro, recursive loop, unknown variable and filter."""
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as error:
        return [_syntax_problem(field, error)]
    except RecursionError:
        return [TemplateProblem(field, "the template nests too deeply to compile (blocks inside blocks, or brackets)")]
    problems = []
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        problems.append(TemplateProblem(field, "templates cannot include, import or extend other templates", node.lineno))
    # A macro calling itself twice is exponential without a single loop; emails need none.
    for node in tree.find_all((nodes.Macro, nodes.CallBlock)):
        problems.append(TemplateProblem(field, "templates cannot define macros ({% macro %} or {% call %}): write the words out", node.lineno))
    for node in tree.find_all(nodes.For):
        if node.recursive:
            problems.append(TemplateProblem(field, "recursive loops are not available", node.lineno))
    assigned = {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name not in TOP_LEVEL_VARIABLES | BLOCK_VARIABLES and node.name not in assigned:
            problems.append(TemplateProblem(field, f"“{node.name}” is not one of the variables listed beside the editor", node.lineno))
    for node in tree.find_all(nodes.Filter):
        if node.name not in FILTERS:
            problems.append(TemplateProblem(field, f"the filter “{node.name}” is not available (use: {', '.join(FILTERS)})", node.lineno))
    return sorted(problems, key=lambda problem: problem.line or 0)


def _line_of(error: Exception) -> int | None:
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == "<template>"]
    return frames[-1].lineno if frames else None


def email_check(subject: str, body: str, sample_contexts: list[dict]) -> None:
    """Refuse a template that would fail or misbehave at send time: raises the first
    TemplateProblem that email_problems finds."""
    problems = email_problems(subject, body, sample_contexts)
    if problems:
        raise problems[0]


def email_problems(subject: str, body: str, sample_contexts: list[dict]) -> list[TemplateProblem]:
    """Every problem that would make the template fail or misbehave at send time, the subject's
    first; an empty list when it may be saved. Raises nothing.

    Checks the subject's length and single line, that both parts compile, use only the
    documented variables and filters and no includes or macros, then renders them strictly
    against sample contexts (with and without a group, with and without the week's optional
    parts, with strings as long as real ones), which catches an attribute that does not
    exist, anything the sandbox forbids and any limit a render breaks (scheduler/sandbox.py):
    all those renders together must finish within CHECK_SECONDS_MAX.

    Each part is checked on its own, so staff see the subject's and the body's problems at
    once. Within a part every problem in its source is listed; a part that shows one is not
    rendered, and its render stops at the first failure (the next would mostly repeat it).
    """
    problems = {"subject": [], "body": []}
    if "\n" in subject or "\r" in subject:
        problems["subject"].append(TemplateProblem("subject", "the subject must be a single line"))
    elif len(subject) > SUBJECT_MAX_LENGTH:
        problems["subject"].append(TemplateProblem("subject", f"the subject is {len(subject)} characters long; at most {SUBJECT_MAX_LENGTH}"))
    else:
        problems["subject"] += _source_problems("subject", subject, _TEXT_STRICT)
    if not body.strip():
        problems["body"].append(TemplateProblem("body", "the email has no text"))
    elif len(body) > BODY_MAX_LENGTH:
        problems["body"].append(TemplateProblem("body", f"the email is {len(body):,} characters long; at most {BODY_MAX_LENGTH:,}"))
    else:
        problems["body"] += _source_problems("body", body, _TEXT_STRICT)
    if not problems["body"]:
        try:
            # The text part holds the body's own tags, in the same order, between plainer words:
            # the body rendered as text below stands for it, and compiling it is enough.
            _compile_checked("body", markdown_to_text_template(body), _TEXT_STRICT)
        except TemplateProblem as problem:
            problems["body"].append(problem)
    deadline = deadline_after(sandbox.CHECK_SECONDS_MAX)
    if not problems["subject"]:
        problem = _render_problem_of("subject", [(subject, _TEXT_STRICT)], sample_contexts, deadline)
        problems["subject"] += [problem] if problem else []
    if not problems["body"]:
        sources = [(body, _TEXT_STRICT), (markdown_to_html_template(body), _HTML_STRICT)]
        problem = _render_problem_of("body", sources, sample_contexts, deadline)
        problems["body"] += [problem] if problem else []
    return problems["subject"] + problems["body"]


def _render_problem_of(field: str, sources: list, sample_contexts: list[dict], deadline) -> TemplateProblem | None:
    """The first failure rendering a part's sources (the body: as text, then as HTML) for the samples."""
    over_time = f"checking it for the sample learners took longer than {sandbox.CHECK_SECONDS_MAX:g} seconds"
    for source, environment in sources:
        try:
            template = _compile_checked(field, source, environment)
        except TemplateProblem as problem:
            return problem
        for context in sample_contexts:
            try:
                render_bounded(template, context, deadline, over_time)
            except Exception as error:
                # The HTML's lines are the converted Markdown's, not the body's the editor shows.
                return _render_problem(field, error, _line_of(error) if environment is _TEXT_STRICT else None)
    return None


def _compile_checked(field: str, source: str, environment):
    try:
        return environment.from_string(source)
    except TemplateSyntaxError as error:
        raise _syntax_problem(field, error) from None
    except (SyntaxError, RecursionError):  # Python's own limits on nesting (some 20 blocks deep), met before Jinja2's
        raise TemplateProblem(field, "the template nests too deeply to compile (blocks inside blocks, or brackets)") from None


def _render_problem(field: str, error: Exception, line: int | None) -> TemplateProblem:
    if isinstance(error, (UndefinedError, SecurityError)):
        return TemplateProblem(field, f"{error.message if hasattr(error, 'message') else error}", line)
    if isinstance(error, TemplateError):  # RenderLimitExceeded among them: the limit it broke
        return TemplateProblem(field, str(error), line)
    # A filter given the wrong thing, say: still a template problem.
    return TemplateProblem(field, f"{type(error).__name__}: {error}", line)


@dataclass(frozen=True)
class CompiledEmail:
    subject: object
    text: object
    html: object


_compiled: dict[tuple, CompiledEmail] = {}
_COMPILED_KEPT = 512


def email_compile(version) -> CompiledEmail:
    """The three compiled templates of a version (anything with pk, subject, body, body_html).

    Compiled once per process and kept: a version never changes after it is saved.
    An unsaved version (pk None, the editor's preview) is compiled afresh each time.
    """
    # Keyed by id and creation time: an id alone may come back after a database is reset.
    key = (version.pk, getattr(version, "created_at", None))
    compiled = _compiled.get(key) if version.pk is not None else None
    if compiled is None:
        compiled = CompiledEmail(
            subject=_TEXT.from_string(version.subject),
            text=_TEXT.from_string(markdown_to_text_template(version.body) + _TEXT_FOOTER),
            html=_HTML.from_string(_LAYOUT.replace("{{ BODY }}", version.body_html)),
        )
        if version.pk is not None:
            if len(_compiled) >= _COMPILED_KEPT:
                _compiled.clear()
            _compiled[key] = compiled
    return compiled


_LIST_JOIN = re.compile(r"</(ul|ol)>\s*<\1 [^>]*>")


@dataclass(frozen=True)
class RenderedParts:
    subject: str
    text: str
    html: str


def email_render_parts(compiled: CompiledEmail, context: dict) -> RenderedParts:
    """The subject, text and HTML of one email, within the sandbox's limits and RENDER_SECONDS_MAX
    for the three together. Raises RenderLimitExceeded (a TemplateError), or what the template raised."""
    deadline = deadline_after(sandbox.RENDER_SECONDS_MAX)
    over_time = f"it took longer than {sandbox.RENDER_SECONDS_MAX:g} seconds"

    def render(template) -> str:
        return render_bounded(template, context, deadline, over_time)

    subject = " ".join(render(compiled.subject).split())
    text = _BLANK_LINES.sub("\n\n", render(compiled.text)).strip() + "\n"
    if _UNDERLINE_LATER in text:
        text = _UNDERLINE.sub(lambda match: f"{match.group(1)}\n{match.group(2) * len(match.group(1))}", text)
    # A {% for %} around a list item repeats the list; consecutive lists join into one.
    html = _LIST_JOIN.sub("", render(compiled.html))
    return RenderedParts(subject=subject, text=text, html=html)
