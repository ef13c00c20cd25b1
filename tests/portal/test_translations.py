"""The English catalogue covers every French string of the portal, and the compiled file matches it."""

from __future__ import annotations

import gettext
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
