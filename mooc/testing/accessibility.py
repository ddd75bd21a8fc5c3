"""axe-core in the browser tests: `axe_violations(page)` lists what it finds on the page as it is now."""

from pathlib import Path

AXE_SOURCE = Path(__file__).resolve().parent / "axe" / "axe.min.js"


def axe_violations(page) -> list[str]:
    """axe-core's violations of WCAG 2.x A and AA (and its best practices) on `page`, one line each:
    rule, impact, and the elements it found (empty when there are none).

    Evaluated through the DevTools protocol rather than page.add_script_tag: the site's
    Content-Security-Policy refuses inline scripts, and a refused axe would be one more
    violation on the console."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SOURCE.read_text())
    results = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, targets: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [f"{result['id']} ({result['impact']}): {', '.join(result['targets'])}" for result in results]
