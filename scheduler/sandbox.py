"""The sandbox staff templates run in: Jinja2's ImmutableSandboxedEnvironment, with limits on
what one render may cost, so that no template can hang or exhaust the worker that renders it.

Jinja2's sandbox stops a template from reaching code or data it should not; it does nothing
about cost: `{{ 'a' * 10**9 }}` or `{{ '%1000000000d' % 1 }}` allocate a gigabyte, five
nested loops over a 106-character link take hours. Here every way a template can make
something big or take long is bounded:

- **One operation** (`*`, `+`, `%`, `~`, a method call such as `ljust`/`replace`/`join`/
  `format`, the `join` filter, a list or dict written in the template) makes at most
  OPERATION_MAX characters, or list items (nested lists count everything in them). Where the
  size can be known before the work is done (repetition, padding, widths and precisions,
  replace, join, translate, to_bytes, powers) the operation is refused before it starts.
- **Numbers** an operation makes have at most NUMBER_DIGITS_MAX digits (`9**9**9` is refused
  before it is computed).
- **Output**: one render (a subject, a text or an HTML part) produces at most OUTPUT_MAX
  characters, counted piece by piece as the template generates them (never joined first),
  including text captured into `{% set %}` blocks, filter blocks and macros (their buffers
  count as they fill).
- **Steps**: one render takes at most STEPS_MAX steps: each turn of a `{% for %}` loop, each
  call and each arithmetic operation is one.
- **Time**: a render stops at its deadline (send time: RENDER_SECONDS_MAX for a whole email;
  the save check: CHECK_SECONDS_MAX for all its sample renders together).

A limit broken raises RenderLimitExceeded (a Jinja2 TemplateRuntimeError) from the
template's own line, so the save check can say where. The render's budget lives in a
ContextVar set by `render_bounded` for as long as the template's generator runs.
"""

import contextvars
import math
import re
import time
from dataclasses import dataclass
from functools import update_wrapper

from jinja2.compiler import CodeGenerator, optimizeconst
from jinja2.exceptions import TemplateRuntimeError
from jinja2.filters import sync_do_join
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import pass_eval_context
from markupsafe import Markup

OPERATION_MAX = 10_000  # characters (or list items) one operation may make
NUMBER_DIGITS_MAX = 30  # digits of a number an operation may make
OUTPUT_MAX = 256 * 1024  # characters one render (subject, text or HTML) may produce
STEPS_MAX = 100_000  # loop turns, calls and operations in one render
RENDER_SECONDS_MAX = 2.0  # one email at send time (its subject, text and HTML together)
CHECK_SECONDS_MAX = 0.5  # the save check: every sample render together

# Read through this name so that tests can drive the deadline with a clock of their own.
_monotonic = time.monotonic


class RenderLimitExceeded(TemplateRuntimeError):
    """A render broke one of the limits above; the message says which, for staff and for the ledger."""


# --- The budget of one render ---------------------------------------------------------------


@dataclass
class RenderBudget:
    """What one render may still spend. Created by `render_bounded`, one per render."""

    deadline: float  # a _monotonic() moment
    over_time: str  # what to say when the deadline passes
    steps_left: int
    characters_left: int

    def step(self) -> None:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise RenderLimitExceeded(f"it took more than {STEPS_MAX:,} steps (loop turns, calls and operations)")
        if _monotonic() > self.deadline:
            raise RenderLimitExceeded(self.over_time)

    def produce(self, characters: int) -> None:
        self.characters_left -= characters
        if self.characters_left < 0:
            raise RenderLimitExceeded(_output_too_long())


def _output_too_long() -> str:
    return f"it produced more than {OUTPUT_MAX // 1024:,} KiB ({OUTPUT_MAX:,} characters)"


_budget: contextvars.ContextVar[RenderBudget] = contextvars.ContextVar("template_render_budget")


def _current_budget() -> RenderBudget:
    try:
        return _budget.get()
    except LookupError:
        raise RuntimeError("staff templates are rendered through scheduler.sandbox.render_bounded") from None


def deadline_after(seconds: float) -> float:
    """The moment, `seconds` from now, for render_bounded's deadline."""
    return _monotonic() + seconds


def render_bounded(template, context: dict, deadline: float, over_time: str) -> str:
    """Render a template of EmailEnvironment within the limits, by `deadline` (a _monotonic() moment).

    Raises RenderLimitExceeded from the template's line that broke a limit. Output is counted
    piece by piece as the template generates it: a render past OUTPUT_MAX stops there, it is
    never joined first. (Template.generate() with one generator less: this runs per piece.)
    """
    budget = RenderBudget(deadline=deadline, over_time=over_time, steps_left=STEPS_MAX, characters_left=OUTPUT_MAX)
    token = _budget.set(budget)
    try:
        pieces = []
        generator = template.root_render_func(template.new_context(context))
        try:
            for piece in generator:
                budget.characters_left -= len(piece)  # budget.produce(), inline
                if budget.characters_left < 0:
                    # Thrown into the template, at the output that broke the limit: the error
                    # then carries that line.
                    generator.throw(RenderLimitExceeded(_output_too_long()))
                pieces.append(piece)
        except Exception:
            template.environment.handle_exception()  # raises it again, traceback rewritten to the template's lines
        return "".join(pieces)
    finally:
        _budget.reset(token)


# --- Sizes ------------------------------------------------------------------------------------


def size_of(value, limit: int = OPERATION_MAX) -> int | None:
    """Characters (or items) in a value: a string's length; a list, tuple or dict counts its items
    and everything in them. For those, None past `limit`: counting stops there, so it is cheap
    on anything big, and a list nested in itself many times (`[a, a]` again and again) is not
    walked exponentially."""
    if isinstance(value, (str, bytes)):
        return len(value)
    total, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, (list, tuple, dict)):
            total += len(item)
            if total <= limit:
                pending.extend(item.items() if isinstance(item, dict) else item)
        else:
            total += 1
        if total > limit:
            return None
    return total


def _too_big(size: int | None) -> RenderLimitExceeded:
    if size is None:
        return RenderLimitExceeded(f"one operation would make more than {OPERATION_MAX:,} characters (or list items)")
    return RenderLimitExceeded(f"one operation would make {size:,} characters (or list items); at most {OPERATION_MAX:,}")


def _number_too_big() -> RenderLimitExceeded:
    return RenderLimitExceeded(f"one operation would make a number of more than {NUMBER_DIGITS_MAX} digits")


def checked(value):
    """The value, if one operation may make it; else RenderLimitExceeded."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value and abs(value) >= 10**NUMBER_DIGITS_MAX:
            raise _number_too_big()
    elif isinstance(value, (str, bytes, list, tuple, dict)):
        _refuse_over(size_of(value))
    return value


def _refuse_over(size: int | None) -> None:
    """Refuse a size past OPERATION_MAX (None: past it, as size_of says)."""
    if size is None or size > OPERATION_MAX:
        raise _too_big(size)


# --- Checks before an operation is done, where its size is known in advance ---------------------


def _check_repetition(left, right) -> None:
    """`text * n`, `n * text`, `[...] * n`."""
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, (str, bytes, list, tuple)) and isinstance(count, int) and count > 0:
            size = size_of(sequence)
            _refuse_over(None if size is None else size * count)


def _check_power(base, exponent) -> None:
    """`base ** exponent` on whole numbers: refused from its size before Python computes it."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        # Any base of 2 or more passes the limit beyond this exponent (and a float could not hold it).
        if exponent > 4 * (NUMBER_DIGITS_MAX + 1) or exponent * math.log10(abs(base)) > NUMBER_DIGITS_MAX + 1:
            raise _number_too_big()


def printf_conversions(fmt: str | bytes) -> list[tuple[int | None, int | None]]:
    """The (width, precision) of each conversion of a printf-style format (`'%5.2f' % x`), read
    as Python reads them (mapping keys with nested brackets, flags, one length modifier; `%%`
    is no conversion); 0 where none is given, None for `*`."""
    text = fmt if isinstance(fmt, str) else fmt.decode("latin-1")
    found: list[tuple[int | None, int | None]] = []
    position = text.find("%")
    while position != -1:
        index = position + 1
        if index < len(text) and text[index] == "(":
            depth, index = 1, index + 1
            while index < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[index], 0)
                index += 1
        while index < len(text) and text[index] in "-+ #0":
            index += 1
        numbers: list[int | None] = []
        for part in ("width", "precision"):
            if part == "precision":
                if index < len(text) and text[index] == ".":
                    index += 1
                else:
                    numbers.append(0)
                    break
            if index < len(text) and text[index] == "*":
                numbers.append(None)
                index += 1
                continue
            start = index
            while index < len(text) and "0" <= text[index] <= "9":
                index += 1
            digits = text[start:index]
            numbers.append(0 if not digits else int(digits) if len(digits) <= 9 else 10**9)
        if index < len(text) and text[index] in "hlL":
            index += 1
        if text[index:index + 1] != "%":
            found.append((numbers[0], numbers[1]))
        position = text.find("%", index + 1)  # past the conversion character
    return found


def _check_printf(fmt, values) -> None:
    """`fmt % values`: every width and precision, then the whole result (each conversion as wide
    as its width, its precision or the longest value, whichever is more), before Python formats it."""
    conversions = printf_conversions(fmt)
    if any(None in conversion for conversion in conversions):
        raise RenderLimitExceeded("a width or precision taken from the arguments (*) is not allowed in a % format")
    for width, precision in conversions:
        _refuse_over(max(width, precision))
    values = list(values.values()) if isinstance(values, dict) else values if isinstance(values, tuple) else (values,)
    longest = max((len(value) if isinstance(value, (str, bytes)) else len(str(value)) for value in values), default=0)
    _refuse_over(len(fmt) + sum(max(width, precision, longest) for width, precision in conversions))


_DIGITS = re.compile(r"[0-9]+")


def check_format_spec(spec: str) -> None:
    """A format spec (`{:>20}`, `{:.3f}`, nested ones resolved): no width or precision past OPERATION_MAX.

    Every number in the spec is taken for a width (a digit used as fill counts too: harmless)."""
    for digits in _DIGITS.findall(spec):
        _refuse_over(int(digits) if len(digits) <= 9 else 10**9)


def _argument(args: tuple, kwargs: dict, index: int, name: str, default=None):
    return args[index] if len(args) > index else kwargs.get(name, default)


def _joined_size(separator, items: list) -> int:
    lengths = sum(len(item) if isinstance(item, (str, bytes)) else len(str(item)) for item in items)
    return lengths + len(str(separator)) * max(len(items) - 1, 0)


def _method_arguments(method, args: tuple, kwargs: dict) -> tuple:
    """Refuse a call to a string, bytes or int method that would make more than OPERATION_MAX,
    before it runs. Returns the arguments to call it with (join's iterable, read once, as a list)."""
    owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
    if isinstance(owner, int) and not isinstance(owner, bool) and name == "to_bytes":
        length = _argument(args, kwargs, 0, "length", 1)
        if isinstance(length, int):
            _refuse_over(length)
        return args
    if not isinstance(owner, (str, bytes)):
        return args
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _argument(args, kwargs, 0, "width")
        if isinstance(width, int):
            _refuse_over(width)
    elif name == "expandtabs":
        tabsize = _argument(args, kwargs, 0, "tabsize", 8)
        if isinstance(tabsize, int):
            _refuse_over(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * max(tabsize, 0))
    elif name == "replace" and len(args) >= 2 and all(isinstance(part, type(owner)) for part in args[:2]):
        old, new = args[0], args[1]
        count = _argument(args, kwargs, 2, "count", -1)
        occurrences = len(owner) + 1 if not old else owner.count(old)
        if isinstance(count, int) and count >= 0:
            occurrences = min(occurrences, count)
        _refuse_over(len(owner) + occurrences * max(len(new) - len(old), 0))
    elif name == "join" and args:
        items = list(args[0])
        _refuse_over(_joined_size(owner, items))
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(owner, str):
        table = args[0]
        values = table.values() if isinstance(table, dict) else table if isinstance(table, (list, tuple)) else ()
        longest = max((len(value) for value in values if isinstance(value, str)), default=1)
        _refuse_over(len(owner) * max(longest, 1))
    return args


# --- The environment ------------------------------------------------------------------------


class _BoundedFormatting:
    """For str.format and format_map: every field's spec, nested specs resolved, is checked
    before the field is formatted, and formatting stops as soon as what it has made (the
    format's own text, then each field) passes OPERATION_MAX."""

    def vformat(self, format_string, args, kwargs):
        self._made = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value, format_spec):
        check_format_spec(format_spec)
        field = super().format_field(value, format_spec)
        self._made += len(field)
        _refuse_over(self._made)
        return field


class _Formatter(_BoundedFormatting, SandboxedFormatter):
    pass


class _EscapeFormatter(_BoundedFormatting, SandboxedEscapeFormatter):
    pass


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles templates so that their loops, buffers, concatenations and literals are counted.

    - every `{% for %}` iterates through `environment.loop_steps(...)` (a step per turn);
    - every buffer (`{% set %}` blocks, filter blocks, macros, call blocks) is a
      CountedBuffer, which counts what is appended against the render's output;
    - `a ~ b` (a Concat, which the sandbox's intercepted_binops never sees) is size-checked
      before its pieces are joined, lists, tuples and dicts written in the template as they
      are made.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loop_iterables: dict[int, object] = {}

    def visit(self, node, *args, **kwargs):
        if self._loop_iterables.pop(id(node), None) is node:
            self.write("environment.loop_steps(")
            super().visit(node, *args, **kwargs)
            self.write(")")
            return None
        return super().visit(node, *args, **kwargs)

    def visit_For(self, node, frame):
        # A recursive loop iterates what loop(...) is given, out of reach here: such loops are
        # refused on save, and at send time each loop(...) call still counts as a step.
        if not node.recursive:
            self._loop_iterables[id(node.iter)] = node.iter
        super().visit_For(node, frame)

    def buffer(self, frame):
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.counted_buffer()")

    def visit_Output(self, node, frame):
        # Jinja2 writes a buffer's append/extend, and a constant's yield, without a line of
        # their own: a limit broken there would be reported at the line before. Mark it.
        self.newline(node)
        super().visit_Output(node, frame)

    def _checked(self, visit, node, frame):
        self.write("environment.checked(")
        visit(node, frame)
        self.write(")")

    @optimizeconst
    def visit_Concat(self, node, frame):
        # Jinja2's, through environment.concat_bounded: the pieces' lengths are added up
        # before they are joined (a ~ b ~ c ... with many pieces could make a lot at once).
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.concat_bounded({join}, (")
        for piece in node.nodes:
            self.visit(piece, frame)
            self.write(", ")
        self.write("))")

    def visit_List(self, node, frame):
        self._checked(super().visit_List, node, frame)

    def visit_Dict(self, node, frame):
        self._checked(super().visit_Dict, node, frame)

    def visit_Tuple(self, node, frame):
        if node.ctx == "load":
            self._checked(super().visit_Tuple, node, frame)
        else:  # an assignment's target: {% for a, b in ... %}
            super().visit_Tuple(node, frame)


class CountedBuffer(list):
    """A template's buffer whose text counts against the render's output as it is appended."""

    def append(self, piece):
        _current_budget().produce(len(piece) if isinstance(piece, str) else 0)
        super().append(piece)

    def extend(self, pieces):
        pieces = list(pieces)
        _current_budget().produce(sum(len(piece) for piece in pieces if isinstance(piece, str)))
        super().extend(pieces)


@pass_eval_context
def bounded_join(eval_ctx, value, d="", attribute=None):
    """The `join` filter, refused before it joins more than OPERATION_MAX characters."""
    items = list(value)
    _refuse_over(_joined_size(d, items))  # with an attribute, what is joined is part of each item: less
    return checked(sync_do_join(eval_ctx, items, d, attribute))


class EmailEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with every operation, loop and buffer bounded (see the module)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def call_binop(self, context, operator, left, right):
        _current_budget().step()
        if operator == "*":
            _check_repetition(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, (str, bytes)):
            _check_printf(left, right)
        return checked(self.binop_table[operator](left, right))

    def call(self, context, obj, /, *args, **kwargs):
        _current_budget().step()
        args = _method_arguments(obj, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        # A macro's or a recursive loop's text counted in its buffer as it was written.
        return result if isinstance(obj, (Macro, LoopContext)) else checked(result)

    def wrap_str_format(self, value):
        """str.format and format_map, with every field's width and precision checked first.

        Jinja2's own wrap_str_format, with the bounded formatters and a size check of the result.
        """
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__
        formatter = _EscapeFormatter(self, escape=text.escape) if isinstance(text, Markup) else _Formatter(self)
        is_format_map = value.__name__ == "format_map"

        def bounded_format(*args, **kwargs):
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                args, kwargs = (), args[0]
            return checked(type(text)(formatter.vformat(text, args, kwargs)))

        return update_wrapper(bounded_format, value)

    # Called by the compiled templates (see _BoundedCodeGenerator).

    def loop_steps(self, iterable):
        budget = _current_budget()
        for item in iterable:
            budget.step()
            yield item

    def counted_buffer(self) -> CountedBuffer:
        return CountedBuffer()

    def checked(self, value):
        return checked(value)

    def concat_bounded(self, join, pieces: tuple):
        made = 0
        for piece in pieces:
            made += len(piece) if isinstance(piece, str) else len(str(piece))
            _refuse_over(made)
        return checked(join(pieces))
