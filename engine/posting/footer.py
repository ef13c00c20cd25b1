"""The footer added to every text part a recipient reads: which list, why they receive it, how to leave.

French, as the federation's members read it. The unsubscribe link is personal (it names the
member(s) or the address, never changes after an address change) and works without logging in.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.posting.render import ListInfo, Personal


def _shared_note(personal: Personal) -> str:
    if personal.shared_by <= 1:
        return ""
    return (f"Cette adresse est partagée par {personal.shared_by} licenciés : ils reçoivent ensemble "
            "cet unique exemplaire, et le lien ci-dessous retire l'adresse de la liste pour eux tous.")


def text(info: ListInfo, personal: Personal) -> str:
    """Plain-text footer, ending with a line break (the signature separator "-- " first)."""
    lines = [
        "",
        "-- ",
        f"Liste « {info.name} » <{info.address}>",
        f"Vous recevez ce message parce que : {personal.reason}.",
    ]
    note = _shared_note(personal)
    if note:
        lines.append(note)
    lines.append(f"Se désabonner : {personal.unsubscribe_url}")
    return "\n".join(lines) + "\n"


def html(info: ListInfo, personal: Personal) -> str:
    """HTML footer block, inserted before ``</body>``, ending with a line break."""
    note = _shared_note(personal)
    url = escape(personal.unsubscribe_url, quote=True)
    return (
        '<hr><div style="font-size:12px;color:#555">'
        f"<p>Liste « {escape(info.name)} » &lt;{escape(info.address)}&gt;<br>"
        f"Vous recevez ce message parce que : {escape(personal.reason)}.</p>"
        + (f"<p>{escape(note)}</p>" if note else "")
        + f'<p><a href="{url}">Se désabonner</a> : {url}</p></div>\n'
    )
