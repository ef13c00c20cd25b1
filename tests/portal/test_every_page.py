"""Every page of the portal and every mail the product sends, in French and in English, with a federation that
has lived a little (tests/support/world.py): no untranslated string, and no raw machine value (a repr, ``None``,
``True``, an ISO or RFC 2822 timestamp, an engine code such as ``one-click`` or ``list.created``).

Pages are found in the URL map: a GET page added later without a way to render it here fails this test.
Names and addresses of the federation (data, typed by people) are taken out before the language is checked.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from babel.messages.pofile import read_po

from engine.directory.models import Member, Role, Structure
from engine.lists.models import MailingList
from engine.outbound.mail import read_captured
from engine.outbound.models import ThrottleRule
from engine.posting import reasons
from portal import create_app
from tests.portal.test_translations import PO, recorded_actions
from tests.support import world as lived

FRENCH_WORDS = {"le", "la", "les", "des", "du", "une", "est", "vous", "votre", "vos", "pour", "avec", "dans",
                "sur", "pas", "aux", "été", "cette", "qui", "et", "au", "ou", "ne", "sont", "liste", "adresse"}
ENGLISH_WORDS = {"the", "and", "with", "your", "you", "this", "from", "which", "not", "allowed", "held", "sender",
                 "has", "have", "been", "is", "are", "will", "address", "none"}  # not "list": List-Id
RAW = {
    "repr or None": re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|[{\[]\s*'[^']*'\s*[:,\]]|<\w+ object at 0x"),
    "ISO time": re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2})?\b"),
    "RFC 2822 time": re.compile(r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} \w{3} \d{4}|[+-]0000\b"),
    "engine code": re.compile(r"(?<![\w@.-])(?:one-click|footer|mailto|old-address|superseded)(?![\w@.-])"),
}
SKIPPED_TAGS = {"script", "style", "iframe"}
DATA_TAGS = {"textarea"}  # typed by people
DATA_CLASSES = ("mail-body", "mono", "address", "list-address")  # what people typed or servers answered


class _Text(HTMLParser):
    """The text people read: content and the attributes read out (aria-label, title, alt, placeholder)."""

    def __init__(self, *, keep_data: bool) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skipping: list[str] = []
        self.keep_data = keep_data

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        data = tag in DATA_TAGS or any(c in DATA_CLASSES for c in classes)
        if self.skipping or tag in SKIPPED_TAGS or (data and not self.keep_data) or "mail-body" in classes:
            if tag not in ("br", "input", "img", "meta", "link"):
                self.skipping.append(tag)
            return
        self.parts += [found[name] or "" for name in ("aria-label", "title", "alt", "placeholder") if name in found]

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def visible(html: str, *, keep_data: bool) -> str:
    parser = _Text(keep_data=keep_data)
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def data_strings() -> list[str]:
    """The federation's own words (names of people, structures, lists, roles): not the interface's."""
    found = [s.name for s in Structure.select()] + [m.name for m in MailingList.select()]
    found += [m.full_name for m in Member.select()] + [r.name_fr for r in Role.select()]
    found += [rule.label for rule in ThrottleRule.select() if rule.name != "default"]  # "La Poste", "Orange"…
    found += ["Rendez-vous au port à huit heures.", "Hors sujet pour cette liste", "Sortie du dimanche",
              "Palanquée"]
    return sorted(set(found), key=len, reverse=True)


def without_data(text: str, data: list[str]) -> str:
    for value in data:
        text = text.replace(value, " ")
    return text


@functools.cache
def catalogue_phrases() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Patterns of the catalogue's French and English fragments (placeholders cut out) that differ between the two
    languages: two words or more, or one accented French word ("Réglages")."""
    with PO.open("rb") as handle:
        entries = [m for m in read_po(handle) if m.id]
    french, english = set(), set()
    for entry in entries:
        source = entry.id if isinstance(entry.id, str) else entry.id[0]
        target = entry.string if isinstance(entry.string, str) else entry.string[0]
        if not target or source == target:
            continue
        for text, into, accented in ((source, french, True), (target, english, False)):
            for piece in re.split(r"%\(\w+\)[sd]|[«»“”:;()]", text):
                piece = " ".join(piece.split()).strip(" .,?!’'")
                if len(piece.split()) >= 2 or (accented and len(piece) >= 4 and not piece.isascii()):
                    into.add(piece)
    common = french & english  # "Commissions", "Description", "DKIM, SPF": the same in both
    french -= common
    english -= common

    def pattern(phrases: set[str]) -> re.Pattern[str]:
        ordered = sorted(phrases, key=len, reverse=True)
        return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in ordered) + r")(?!\w)")

    return pattern(french), pattern(english)


def problems(text: str, clean: str, language: str, phrases: tuple[re.Pattern[str], re.Pattern[str]]) -> list[str]:
    """What a reader should not meet: raw values anywhere, the other language in the interface's words."""
    found = [f"{what}: {m.group(0)!r}" for what, pattern in RAW.items() for m in pattern.finditer(text)]
    found += [f"audit code: {code}" for code in recorded_actions() if code in text]
    other_phrases, stop_words = (phrases[0], FRENCH_WORDS) if language == "en" else (phrases[1], ENGLISH_WORDS)
    found += [f"untranslated: {m.group(0)!r}" for m in other_phrases.finditer(clean)]
    words = set(re.findall(r"[^\W\d_]+", clean.lower()))
    found += [f"other language word: {word!r}" for word in sorted(words & stop_words)]
    if language == "fr":
        found += [f"English reason: {key!r}" for key in reasons.REASONS if key in text]
    return found


# --- the pages ---

STAFF_PREFIXES = ("admin.", "messages.")
MEMBER_ENDPOINTS = ("espace.index", "espace.email")


def page_paths(app: Any, world: lived.World) -> list[tuple[str, str]]:
    """(who, path) for every GET page of the URL map, plus the variants a single URL does not show."""
    first_rule = ThrottleRule.select(ThrottleRule.id).order_by(ThrottleRule.id).scalar()  # a preset (migration)
    values = {"list_id": world.role_list.id, "message_id": world.held.id, "key": world.captured_key,
              "rule_id": first_rule}
    pages = []
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint in ("static", "health.healthz") \
                    or rule.endpoint.endswith(("progress", "_csv")):  # CSV files: fixed column names
                continue
            arguments = {name: world.tokens[rule.endpoint] if name == "token" else values[name]
                         for name in rule.arguments}  # a KeyError here: a new page this test cannot reach yet
            who = "staff" if rule.endpoint.startswith(STAFF_PREFIXES) else \
                "member" if rule.endpoint in MEMBER_ENDPOINTS else "anonymous"
            pages.append((who, url_for(rule.endpoint, **arguments)))
    static = world.static_list.id
    pages += [("staff", f"/admin/lists/{static}"), ("staff", f"/admin/lists/{static}/subscribers"),
              ("staff", f"/admin/messages/{world.sent.id}"), ("staff", f"/admin/lists/{world.role_list.id}/posting"),
              ("anonymous", "/une-page-qui-n-existe-pas")]
    return pages


def client_for(app: Any, licence: str | None) -> Any:
    from engine import demo

    client = app.test_client()
    if licence is not None:
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        answer = client.post("/login", data={"identifier": licence, "password": demo.DEMO_PASSWORD,
                                             "csrf_token": token})
        assert answer.status_code == 302
    return client



@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_page_reads_in_one_language_without_machine_values(settings, db, language: str) -> None:
    from engine import demo

    settings = dataclasses.replace(settings, default_language=language)
    world = lived.build(settings)
    app = create_app(settings, config={"TESTING": True})
    clients = {"anonymous": client_for(app, None), "member": client_for(app, demo.MEMBER_LICENCE),
               "staff": client_for(app, demo.ADMIN_LICENCE)}
    for client in clients.values():
        client.get(f"/?lang={language}")
    data, phrases, report = data_strings(), catalogue_phrases(), {}
    extra = _posted_pages(clients["staff"], world)
    for who, path in page_paths(app, world):
        response = clients[who].get(path, follow_redirects=True)
        assert response.status_code in (200, 404), (path, response.status_code)
        extra.append((path, response.get_data(as_text=True)))
    for path, html in extra:
        text, clean = visible(html, keep_data=True), without_data(visible(html, keep_data=False), data)
        found = problems(text, clean, language, phrases)
        if found:
            report[path] = found
    assert not report, "\n".join(f"{path}: {found}" for path, found in report.items())
    assert len(extra) > 30


def _posted_pages(staff: Any, world: lived.World) -> list[tuple[str, str]]:
    """Pages shown in answer to a form: confirmations, field errors, the preview fragment."""
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', staff.get("/admin/").get_data(as_text=True)).group(1)
    from engine.lists.models import Domain

    domain = Domain.select().where(Domain.lists_enabled == True).first()  # noqa: E712
    ml = world.role_list.id
    posts = {
        f"/admin/domains/{domain.id}": {"enabled": "0"},
        "/admin/lists/delete": {"list_ids": str(world.static_list.id)},
        f"/admin/lists/{ml}/criteria/preview": {"criteria-0-structure": "CR-PROV", "criteria-0-include_subtree": "y"},
        f"/admin/lists/{ml}/criteria/exact": {"criteria-0-structure": "CR-PROV", "criteria-0-include_subtree": "y"},
        f"/admin/lists/{ml}/criteria": {"criteria-0-structure": "NULLE-PART", "action": "save"},
        f"/admin/lists/{world.static_list.id}/subscribers": {"subscribers": "a@@b\nok@example.org"},
        "/admin/lists/new": {"local_part": "a+b", "structure": "CR-PROV", "domain": str(domain.id),
                             "kind": "static"},
    }
    return [(path, staff.post(path, data={"csrf_token": token, **data}).get_data(as_text=True))
            for path, data in posts.items()]


# --- the mail ---

@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_mail_reads_in_one_language_without_machine_values(settings, db, language: str) -> None:
    settings = dataclasses.replace(settings, default_language=language)
    lived.build(settings)
    app = create_app(settings, config={"TESTING": True})  # the portal's own mail: the address change
    client = client_for(app, "A-13-000002")
    page = client.get(f"/espace/adresse?lang={language}").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    client.post("/espace/adresse", data={"email": "karim.nouveau@example.org", "csrf_token": token})
    mails = read_captured(settings.capture_dir)
    templates = {m["Subject"] for m in mails}
    assert len(templates) >= 9, templates  # activation, reset, confirm, notice, created, help, moderation ×3
    data, phrases, report = data_strings(), catalogue_phrases(), {}
    for message in mails:
        text = f"{message['Subject']}\n{message.get_content()}"
        clean = without_data(re.sub(r"\S+@\S+|https?://\S+", " ", text), data)
        found = problems(text, clean, language, phrases)
        if found:
            report[f"{message['Subject']} → {message['To']}"] = found
    assert not report, "\n".join(f"{subject}: {found}" for subject, found in report.items())
