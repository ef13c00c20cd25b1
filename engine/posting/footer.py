"""The footer added to every text part a recipient reads: which list, why they receive it, how to leave.

French, as the federation's members read it. The unsubscribe link is personal (it names the
member(s) or the address, never changes after an address change) and works without logging in.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.posting.render import ListInfo, Personal


def _shared_note(shared_by: int) -> str:
    if shared_by <= 1:
        return ""
    return (f"Cette adresse est partagée par {shared_by} licenciés : ils reçoivent ensemble "
            "cet unique exemplaire, et le lien ci-dessous retire l’adresse de la liste pour eux tous.")


def text_head(info: ListInfo, reason: str, shared_by: int) -> str:
    """The part of the plain-text footer that depends on the reason (encoded once per reason)."""
    lines = ["", "-- ", f"Liste « {info.name} » <{info.address}>", f"Vous recevez ce message parce que : {reason}."]
    note = _shared_note(shared_by)
    if note:
        lines.append(note)
    return "\n".join(lines) + "\n"


def text_link(url: str) -> str:
    """The personal line of the plain-text footer (encoded per copy)."""
    return f"Se désabonner : {url}\n"


def html_head(info: ListInfo, reason: str, shared_by: int) -> str:
    note = _shared_note(shared_by)
    return ('<hr><div style="font-size:12px;color:#555">'
            f"<p>Liste « {escape(info.name)} » &lt;{escape(info.address)}&gt;<br>"
            f"Vous recevez ce message parce que : {escape(reason)}.</p>"
            + (f"<p>{escape(note)}</p>" if note else "") + "\n")


def html_link(url: str) -> str:
    url = escape(url, quote=True)
    return f'<p><a href="{url}">Se désabonner</a> : {url}</p></div>\n'


def text(info: ListInfo, personal: Personal) -> str:
    """Plain-text footer, ending with a line break (the signature separator "-- " first)."""
    return text_head(info, personal.reason, personal.shared_by) + text_link(personal.unsubscribe_url)


def html(info: ListInfo, personal: Personal) -> str:
    """HTML footer block, inserted before ``</body>``, ending with a line break."""
    return html_head(info, personal.reason, personal.shared_by) + html_link(personal.unsubscribe_url)
