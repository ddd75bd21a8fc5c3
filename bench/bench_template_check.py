"""The save-time check of staff email templates: how long it takes on the demo course's
default emails, and how fast it refuses each template bomb.

The check is what saving in the admin, the editor's live preview and `template_version_save`
run: `email_check(subject, body, sample_contexts())`, which compiles the subject and body,
then renders the subject, the text and the HTML for each made-up learner, whose names,
titles and links are as long as real ones can be, in a full group (scheduler/selectors.py),
within the sandbox's limits (scheduler/sandbox.py).

- Each of the demo course's 11 default emails (8 weeks, welcome, group introduction, course
  end, as `load_demo` installs them) is checked REPEATS times; the median of each is kept,
  and the longest and the total of those medians are printed.
- Each bomb (the templates that hung or exhausted workers before the limits: issue 10) is
  checked REPEATS times and must be refused; the median time to refusal is printed with the
  refusal. A bomb that is not refused stops the benchmark with an error.

Target: every refusal, and the longest check of a default email, in well under a second (the
check gives up after CHECK_SECONDS_MAX in any case).
"""

import io
import statistics
import time

from _common import django_on_throwaway_database, milliseconds, print_results

REPEATS = 20

FIVE_LOOPS = "".join(f"{{% for {name} in links.manage %}}" for name in "abcde") + "x" + "{% endfor %}" * 5
BOMBS = {
    "'%1000000000d' % 1": "{{ '%1000000000d' % 1 }}",
    "'a'*10**9": "{{ 'a'*10**9 }}",
    ".ljust(10**9)": "{{ learner.first_name.ljust(10**9) }}",
    "'{:>1000000000}'.format(1)": "{{ '{:>1000000000}'.format(1) }}",
    "'{:>{}}'.format(1, 10**9)": "{{ '{:>{}}'.format(1, 10**9) }}",
    "9**9**9": "{{ 9**9**9 }}",
    "5 nested for over links.manage": FIVE_LOOPS,
    "{% set a = a ~ a %} x 40 lines": "{% set a = links.manage %}\n" + "{% set a = a ~ a %}\n" * 40 + "{{ a }}",
    "{% set %} block doubling x 40": "{% set a %}{{ links.manage }}{% endset %}\n" + "{% set a %}{{ a }}{{ a }}{% endset %}\n" * 40,
    "[a, a] nesting x 40": "{% set a = [links.manage] %}\n" + "{% set a = [a, a] %}\n" * 40 + "{{ a }}",
    "recursive macro": "{% macro f() %}{{ f() }}{{ f() }}{% endmacro %}{{ f() }}",
    "output past the cap": "{% for a in links.manage %}{% for b in links.manage %}{{ links.manage }}{% endfor %}{% endfor %}",
}


def main() -> None:
    with django_on_throwaway_database():
        # Imported only now: Django must not read its settings before the environment is set.
        from django.core.management import call_command

        from scheduler.models import EmailTemplate
        from scheduler.selectors import sample_contexts
        from scheduler.templating import TemplateProblem, email_check

        call_command("load_demo", stdout=io.StringIO())
        templates = EmailTemplate.objects.filter(cohort=None).select_related("current_version").order_by("kind", "week_number")

        def timings(subject: str, body: str) -> tuple[float, TemplateProblem | None]:
            seconds, problem = [], None
            for _ in range(REPEATS):
                started = time.perf_counter()
                try:
                    email_check(subject, body, sample_contexts())
                except TemplateProblem as refusal:
                    problem = refusal
                seconds.append(time.perf_counter() - started)
            return statistics.median(seconds), problem

        defaults = []
        for template in templates:
            seconds, problem = timings(template.current_version.subject, template.current_version.body)
            if problem is not None:
                raise SystemExit(f"bench_template_check: the default {template} is refused: {problem}")
            defaults.append((str(template), seconds))
        bombs = []
        for name, body in BOMBS.items():
            seconds, problem = timings("Hi", f"Hello\n\n{body}\n")
            if problem is None:
                raise SystemExit(f"bench_template_check: the bomb {name} was not refused")
            bombs.append((name, seconds, problem))
        link = len(sample_contexts()[0]["links"]["manage"])

    longest_name, longest = max(defaults, key=lambda row: row[1])
    print_results(
        f"save-time check of the demo's {len(defaults)} default emails (median of {REPEATS}; sample links of {link} characters)",
        [(name, milliseconds(seconds), "ms") for name, seconds in defaults]
        + [("longest", milliseconds(longest), f"ms ({longest_name})"),
           ("total", milliseconds(sum(seconds for _, seconds in defaults)), "ms")],
    )
    print_results(
        f"template bombs: time to refusal on save (median of {REPEATS})",
        [(name, milliseconds(seconds), f"ms  {problem}") for name, seconds, problem in bombs],
    )


if __name__ == "__main__":
    main()
