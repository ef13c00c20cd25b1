"""The English catalogue covers every French string of the portal, and the compiled file matches it; what the
engine records for people (audit actions and authors, opt-out sources, posting reasons) has words in both
languages."""

from __future__ import annotations

import ast
import functools
import gettext
import re
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "portal" / "translations" / "en" / "LC_MESSAGES" / "messages.po"


def test_every_string_of_the_code_is_translated_and_compiled(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "_l",
                    "-k", "lazy_gettext", "-o", str(pot), "--no-location", "."], cwd=ROOT, check=True,
                   capture_output=True)
    with pot.open("rb") as handle:
        wanted = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(handle) if m.id}
    with PO.open("rb") as handle:
        catalogue = read_po(handle)
    translated = {(m.id if isinstance(m.id, str) else m.id[0]): m.string for m in catalogue if m.id}
    missing = sorted(wanted - {key for key, value in translated.items() if value and all(value)})
    assert not missing, f"untranslated (run pybabel extract/update, translate, compile): {missing[:10]}"
    with (PO.parent / "messages.mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = [key for key, value in translated.items()
             if isinstance(value, str) and value and compiled.gettext(key) != value]
    assert not stale, f"messages.mo is older than messages.po (run pybabel compile): {stale[:5]}"


# --- what the engine produces for people: audit actions and authors, opt-out sources, reasons (issue 13) ---

@functools.cache
def _python_sources() -> tuple[ast.Module, ...]:
    return tuple(ast.parse(path.read_text(encoding="utf-8")) for folder in ("engine", "portal")
                 for path in sorted((ROOT / folder).rglob("*.py")))


def _strings(node: ast.AST) -> set[str]:
    """The string constants an expression can evaluate to (a literal, or both branches of ``a if c else b``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    return set()


def _called(node: ast.Call) -> str:
    return node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")


def _calls(name: str) -> list[ast.Call]:
    return [node for tree in _python_sources() for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _called(node) == name]


@functools.cache
def recorded_actions() -> frozenset[str]:
    """Every audit action the code records: literals given to ``audit.record``, and the other literals of the
    same families (``list.subscribers_added`` reaches ``record`` through a helper's parameter)."""
    direct = {text for call in _calls("record") if call.args for text in _strings(call.args[0])}
    families = {action.split(".")[0] + "." for action in direct if "." in action}
    pattern = re.compile(r"^[a-z]+(?:_[a-z]+)*\.[a-z]+(?:_[a-z]+)*$")
    every = {node.value for tree in _python_sources() for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.match(node.value)}
    return frozenset(direct | {text for text in every if text.startswith(tuple(families))})


def opt_out_sources() -> set[str]:
    found = {text for name in ("leave", "leave_as_member", "unsubscribe_with_token") for call in _calls(name)
             for keyword in call.keywords if keyword.arg == "source" for text in _strings(keyword.value)}
    found |= {text for call in _calls("unsubscribe_with_token") if len(call.args) > 2
              for text in _strings(call.args[2])}
    return found


def actor_labels() -> set[str]:
    return {text for call in _calls("record") for keyword in call.keywords if keyword.arg == "actor_label"
            for text in _strings(keyword.value)} - {""}


def test_what_the_engine_records_for_people_has_words_in_both_languages() -> None:
    from portal.admin import journal
    from portal.espace.views import SOURCES as MEMBER_SOURCES

    actions, sources, actors = recorded_actions(), opt_out_sources(), actor_labels()
    assert {"list.created", "list.subscribers_added", "domain.disabled", "message.approved"} <= actions
    assert {"footer", "one-click", "espace", "mailto"} <= sources
    missing = sorted(actions - set(journal.ACTIONS))
    assert not missing, f"audit actions without words in portal/admin/journal.py ACTIONS: {missing}"
    missing = sorted(sources - set(journal.SOURCES)) + sorted(sources - set(MEMBER_SOURCES))
    assert not missing, f"opt-out sources without words (journal.SOURCES, espace SOURCES): {missing}"
    missing = sorted(actors - set(journal.ACTORS) - set(journal.SOURCES))
    assert not missing, f"audit authors without words in journal.ACTORS: {missing}"
    with (PO).open("rb") as handle:
        english = {m.id: m.string for m in read_po(handle) if m.id}
    labels = [*journal.ACTIONS.values(), *journal.SOURCES.values(), *journal.ACTORS.values(),
              *journal.KEYS.values(), *MEMBER_SOURCES.values()]
    untranslated = sorted({str(label) for label in labels if not english.get(str(label))})  # str(): the msgid here
    assert not untranslated, f"labels missing from the English catalogue: {untranslated[:10]}"


def test_french_text_uses_the_typographic_apostrophe_only(tmp_path: Path) -> None:
    """« l’adresse », never a mix of ' and ’ (the pages' strings and the French mail)."""
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "_l",
                    "-k", "lazy_gettext", "-o", str(pot), "--no-location", "."], cwd=ROOT, check=True,
                   capture_output=True)
    straight = re.compile(r"(?<=[A-Za-zÀ-ÿ])'(?=[A-Za-zÀ-ÿ])")
    with pot.open("rb") as handle:
        found = [m.id for m in read_po(handle) if m.id and any(straight.search(i) for i in
                                                               (m.id if isinstance(m.id, tuple) else (m.id,)))]
    found += [path.name for path in sorted((ROOT / "templates" / "mail").glob("*.fr.txt"))
              if straight.search(path.read_text(encoding="utf-8"))]
    assert not found, f"straight apostrophes in French text: {found[:10]}"
