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


def text_parts(info: ListInfo, personal: Personal) -> tuple[str, str]:
    """The plain-text footer as (what depends on the reason, the personal link line); both end with a
    line break, so the first can be encoded once per reason and only the second once per copy."""
    lines = [
        "",
        "-- ",
        f"Liste « {info.name} » <{info.address}>",
        f"Vous recevez ce message parce que : {personal.reason}.",
    ]
    note = _shared_note(personal)
    if note:
        lines.append(note)
    return "\n".join(lines) + "\n", f"Se désabonner : {personal.unsubscribe_url}\n"


def html_parts(info: ListInfo, personal: Personal) -> tuple[str, str]:
    """The HTML footer block as (reason part, personal link part), inserted before ``</body>``."""
    note = _shared_note(personal)
    url = escape(personal.unsubscribe_url, quote=True)
    head = ('<hr><div style="font-size:12px;color:#555">'
            f"<p>Liste « {escape(info.name)} » &lt;{escape(info.address)}&gt;<br>"
            f"Vous recevez ce message parce que : {escape(personal.reason)}.</p>"
            + (f"<p>{escape(note)}</p>" if note else "") + "\n")
    return head, f'<p><a href="{url}">Se désabonner</a> : {url}</p></div>\n'


def text(info: ListInfo, personal: Personal) -> str:
    """Plain-text footer, ending with a line break (the signature separator "-- " first)."""
    return "".join(text_parts(info, personal))


def html(info: ListInfo, personal: Personal) -> str:
    """HTML footer block, inserted before ``</body>``, ending with a line break."""
    return "".join(html_parts(info, personal))
