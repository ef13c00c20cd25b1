"""axe-core (npm, pinned in tests/e2e/package.json) run inside a Playwright page: WCAG 2.2 A and AA rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def violations(page: Page) -> list[dict[str, Any]]:
    """The page's WCAG 2.2 AA violations, as axe reports them (rule id, impact, the nodes and why)."""
    if not AXE.exists():
        raise RuntimeError(f"axe-core is missing: run `npm ci --prefix tests/e2e` (bin/test does) — {AXE}")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the browser's debugging protocol, which the page's Content-Security-Policy does not
        # govern (a <script> tag, inline or not, would be refused: script-src 'self'). The page is tested as served.
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;void 0")
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS)
    return list(result["violations"])


def describe(found: list[dict[str, Any]]) -> str:
    lines = []
    for violation in found:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"][:5]:
            summary = node['failureSummary'].splitlines()
            lines.append(f"    {node['target']}: {' '.join(s.strip() for s in summary[:2])}")
    return "\n".join(lines)


def assert_no_violations(page: Page, what: str) -> None:
    found = violations(page)
    assert not found, f"axe-core, WCAG 2.2 AA, on {what} ({page.url}):\n{describe(found)}"
