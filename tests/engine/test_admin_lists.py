"""Staff workflows on domains and lists: scoping, create (with notice), subscribers, delete, posting rules."""

from __future__ import annotations

import json
from datetime import date

import pytest

from engine import clock
from engine.audit import AuditEvent
from engine.directory import staff
from engine.directory.models import StaffScope, StructureKind
from engine.lists import admin, subscribers
from engine.lists.admin import AdminError, NewList, PostingRules
from engine.lists.models import ListKind, ListModerator, MailingList, OptOut, PostingPermission, Subscription
from engine.lists.resolve import count_recipients
from engine.outbound.mail import read_captured
from tests import factories as f


@pytest.fixture
def fed(db):
    tree = f.federation_tree()
    local = f.domain("listes.cd13.example.fr", tree["cd13"])
    regional = f.member(first_name="Karim", email="karim@example.org", club=tree["club"])
    StaffScope.create(member=regional, structure=tree["provence"], granted_at=clock.now())
    admin_ = f.member(first_name="Sophie", email="sophie@example.org", club=tree["club"])
    StaffScope.create(member=admin_, structure=tree["root"], granted_at=clock.now())
    return dict(tree, local=local, regional=regional, admin=admin_)


def new(fed, local_part="bureau", domain="local", structure="cd13", **kw):
    return NewList(domain_id=fed[domain].id, local_part=local_part, name=kw.pop("name", "Bureau"),
                   structure_id=fed[structure].id, **kw)


def test_create_list_under_second_domain_with_subscribers_and_notice(settings, fed):
    text = "Anne@Example.org\nbob@example.org\nnot an address\nanne@example.org\n\ncarl@example.org"
    created = admin.create_list(settings, fed["regional"], new(fed, owner_id=fed["regional"].id, notify=True,
                                                               subscribers=text))
    ml = created.mailing_list
    assert ml.address == "bureau@listes.cd13.example.fr" and ml.kind == ListKind.STATIC
    assert created.subscribers.added == 3 and created.subscribers.duplicates == 1
    assert [(b.number, b.content) for b in created.subscribers.bad] == [(3, "not an address")]
    assert sorted(s.email for s in Subscription.select()) == ["Anne@Example.org", "bob@example.org",
                                                              "carl@example.org"]
    # the owner is the creator: he is not the one told, the administrators above are (Provence's staff is the
    # creator himself, so the federation's)
    assert [(a.address, a.name) for a in created.notified] == [("sophie@example.org", "Sophie " + fed["admin"].last_name)]
    captured = read_captured(settings.capture_dir)
    welcomed = [m for m in captured if m["Subject"].startswith("Vous êtes inscrit(e)")]  # DELIVERABILITY.md §9.4
    assert sorted(str(m["To"]) for m in welcomed) == ["Anne@Example.org", "bob@example.org", "carl@example.org"]
    [mail] = [m for m in captured if m not in welcomed]
    assert mail["To"] == "sophie@example.org" and "bureau@listes.cd13.example.fr" in mail["Subject"]
    assert "Abonnés saisis : 3" in mail.get_content()
    assert f"créée par Karim {fed['regional'].last_name}" in " ".join(mail.get_content().split())
    actions = [e.action for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert actions == ["list.created", "list.subscribers_replaced", "list.subscribers_welcomed",
                       "list.creation_notified"]


def test_notice_goes_to_the_configured_address_without_owner(settings, fed):
    import dataclasses

    settings = dataclasses.replace(settings, admin_email="listes@ffessm.example")
    created = admin.create_list(settings, fed["regional"], new(fed, notify=True))
    assert [a.address for a in created.notified] == ["listes@ffessm.example"]  # the platform's, before staff
    assert read_captured(settings.capture_dir)[0]["To"] == "listes@ffessm.example"
    unticked = admin.create_list(settings, None, new(fed, local_part="autre", notify=False))
    assert unticked.notified == () and len(read_captured(settings.capture_dir)) == 1


def test_the_administrators_told_are_those_above_never_the_creator(settings, fed):
    other = f.member(first_name="Paul", email="paul@example.org", club=fed["club"])
    StaffScope.create(member=other, structure=fed["provence"], granted_at=clock.now())
    by_regional = admin.create_list(settings, fed["regional"], new(fed, notify=True))
    assert [a.address for a in by_regional.notified] == ["paul@example.org"]  # Provence's staff but Karim
    top = admin.create_list(settings, fed["admin"], new(fed, local_part="tous", structure="root", domain="national",
                                                        notify=True))
    assert top.notified == ()  # nobody above the federation, and never the creator herself
    assert [m["To"] for m in read_captured(settings.capture_dir)] == ["paul@example.org"]


@pytest.mark.parametrize("name", ["Bureau\r\nBcc: victim@example.org", "Bureau\nX", "Bu\x00reau", "A\u2028B"])
def test_header_injection_is_refused_in_names_and_prefixes(settings, fed, name):
    with pytest.raises(AdminError) as caught:
        admin.create_list(settings, None, new(fed, name=name))
    assert caught.value.code == "control_characters"
    ml = admin.create_list(settings, None, new(fed)).mailing_list
    with pytest.raises(AdminError):
        admin.update_settings(None, ml, name="Bureau", subject_prefix=name)
    assert MailingList.get_by_id(ml.id).subject_prefix == ""


@pytest.mark.parametrize("local_part", ["a b", "bureau-request", "x+y", "-x", "é", "a..b", "a" * 70, "", "fbl", "FBL"])
def test_bad_local_parts_are_refused(settings, fed, local_part):
    with pytest.raises(AdminError) as caught:
        admin.create_list(settings, None, new(fed, local_part=local_part))
    assert caught.value.code == "bad_local_part"


def domain_name(length: int) -> str:
    """A valid domain name of ``length`` octets: labels of at most 63 octets, then ``.fr``."""
    body = length - len(".fr")
    labels = [("x" * 63) for _ in range(body // 64)]
    rest = body - 64 * len(labels)
    return ".".join([*labels, "y" * rest] if rest else labels) + ".fr"


def test_an_address_longer_than_254_octets_is_refused_at_254_it_is_created(settings, fed):
    # RFC 5321 §4.5.3.1.3 (254 in a path) and RFC 2919 (List-Id ``local.domain`` within 255).
    local = "b" * 64
    fed["long"] = f.domain(domain_name(254 - 1 - 64), fed["cd13"])
    ml = admin.create_list(settings, None, new(fed, local_part=local, domain="long")).mailing_list
    assert len(ml.address) == 254 and len(f"{ml.local_part}.{ml.domain.name}") == 254
    fed["longer"] = f.domain(domain_name(254 - 64), fed["cd13"])  # one octet more
    with pytest.raises(AdminError) as caught:
        admin.create_list(settings, None, new(fed, local_part=local, domain="longer"))
    assert caught.value.code == "address_too_long" and caught.value.params["limit"] == 254
    assert not MailingList.select().where(MailingList.domain == fed["longer"]).exists()


def test_address_taken_by_live_or_deleted_list(settings, fed):
    ml = admin.create_list(settings, None, new(fed)).mailing_list
    with pytest.raises(AdminError, match="address_taken"):
        admin.create_list(settings, None, new(fed, local_part="BUREAU"))
    admin.delete_lists(None, [ml.id])
    with pytest.raises(AdminError, match="address_deleted"):
        admin.create_list(settings, None, new(fed))
    admin.purge_list(None, MailingList.get_by_id(ml.id))
    again = admin.create_list(settings, None, new(fed)).mailing_list
    assert MailingList.select().count() == 1 and again.deleted_at is None
    assert AuditEvent.select().where(AuditEvent.action == "list.purged").count() == 1


def test_regional_staff_cannot_reach_another_region(settings, fed):
    elsewhere = f.mailing_list("bretons", fed["national"], fed["bretagne"])
    mine = f.mailing_list("provencaux", fed["national"], fed["provence"])
    regional = fed["regional"]
    assert [ml.local_part for ml in admin.visible_lists(regional)] == ["provencaux"]
    assert {ml.local_part for ml in admin.visible_lists(fed["admin"])} == {"bretons", "provencaux"}
    with pytest.raises(staff.NotAllowed):
        admin.get_list(regional, elsewhere.id)
    with pytest.raises(staff.NotAllowed):
        admin.delete_lists(regional, [mine.id, elsewhere.id])
    assert MailingList.get_by_id(mine.id).deleted_at is None  # nothing deleted when one is refused
    with pytest.raises(staff.NotAllowed):
        admin.create_list(settings, regional, new(fed, structure="bretagne", domain="national"))
    with pytest.raises(staff.NotAllowed):
        subscribers.replace_subscribers(regional, elsewhere, "x@example.org")
    with pytest.raises(staff.NotAllowed):
        admin.set_domain_enabled(regional, fed["national"], False)  # the federation's domain
    assert [d.name for d in admin.usable_domains(regional)] == ["listes.cd13.example.fr", "listes.example.fr"]


def test_domain_switch_keeps_lists_and_is_audited(settings, fed):
    ml = admin.create_list(settings, None, new(fed, subscribers="a@example.org")).mailing_list
    assert admin.set_domain_enabled(fed["regional"], fed["local"], False) is True
    assert admin.set_domain_enabled(fed["regional"], fed["local"], False) is False
    ml = MailingList.get_by_id(ml.id)
    assert ml.domain.lists_enabled is False and ml.deleted_at is None and count_recipients(ml) == 1
    admin.set_domain_enabled(fed["regional"], fed["local"], True)
    assert MailingList.get_by_id(ml.id).domain.lists_enabled is True
    assert [e.action for e in AuditEvent.select().where(AuditEvent.object_type == "domain")
            .order_by(AuditEvent.id)] == ["domain.disabled", "domain.enabled"]


def test_edit_subscribers_adds_removes_and_reports_bad_lines(settings, fed):
    ml = admin.create_list(settings, None, new(fed, subscribers="a@example.org\nb@example.org")).mailing_list
    change = subscribers.replace_subscribers(fed["regional"], ml, "B@example.org\nc@example.org\nd@@example.org")
    assert (change.added, change.removed, change.kept) == (1, 1, 1)
    assert [(b.number, b.content) for b in change.bad] == [(3, "d@@example.org")]
    assert subscribers.subscribers_text(ml) == "b@example.org\nc@example.org"


def test_opted_out_addresses_stay_out_when_typed_again(settings, fed):
    someone = f.member(email="Leaver@example.org", club=fed["club"])
    ml = admin.create_list(settings, None, new(fed, subscribers="leaver@example.org\nx@example.org")).mailing_list
    from engine.lists import optouts

    optouts.leave(ml, member=someone, source="footer")
    change = subscribers.replace_subscribers(None, ml, "x@example.org\nLEAVER@example.org")
    assert change.opted_out == ["leaver@example.org"]
    assert OptOut.select().count() == 1 and count_recipients(ml) == 1


def test_bulk_add_and_remove_in_batches(settings, fed, monkeypatch):
    monkeypatch.setattr(subscribers, "BATCH", 7)  # several batches with a small list
    ml = admin.create_list(settings, None, new(fed)).mailing_list
    lines = "\n".join(f"user{i}@example.org" for i in range(40))
    change = subscribers.add_subscribers(None, ml, lines + "\nUSER3@example.org\nbad")
    assert (change.added, change.duplicates, len(change.bad)) == (40, 1, 1)
    assert subscribers.add_subscribers(None, ml, "user1@example.org\nnew@example.org").added == 1
    removed = subscribers.remove_subscribers(None, ml, "\n".join(f"user{i}@example.org" for i in range(0, 40, 2)))
    assert removed.removed == 20 and subscribers.subscriber_count(ml) == 21
    page, total = subscribers.subscribers_page(ml, page=2, per_page=10)
    assert total == 21 and len(page) == 10


def test_delete_lists_is_a_soft_delete(settings, fed):
    a = admin.create_list(settings, None, new(fed, local_part="a")).mailing_list
    b = admin.create_list(settings, None, new(fed, local_part="b")).mailing_list
    c = admin.create_list(settings, None, new(fed, local_part="c")).mailing_list
    admin.delete_lists(fed["regional"], [a.id, b.id])
    assert [ml.local_part for ml in admin.visible_lists(fed["regional"])] == ["c"]
    assert MailingList.get_by_id(a.id).deleted_at is not None and MailingList.select().count() == 3
    with pytest.raises(MailingList.DoesNotExist):
        admin.get_list(None, a.id)
    assert MailingList.get_by_id(c.id).deleted_at is None  # reloaded: the object in hand never changes


def test_lists_page_search_sort_and_counts(settings, fed):
    admin.create_list(settings, None, new(fed, local_part="zeta", name="Zêta", subscribers="a@x.org\nb@x.org"))
    admin.create_list(settings, None, new(fed, local_part="alpha", name="Alpha", domain="national"))
    rows, total = admin.lists_page(fed["admin"], sort="address")
    assert total == 2 and [(r.mailing_list.local_part, r.recipients) for r in rows] == [("alpha", 0), ("zeta", 2)]
    rows, _ = admin.lists_page(fed["admin"], sort="address", descending=True)
    assert rows[0].mailing_list.local_part == "zeta"
    rows, total = admin.lists_page(fed["admin"], search="ZET")
    assert total == 1 and rows[0].mailing_list.name == "Zêta"


def test_posting_rules_are_stored(settings, fed):
    ml = admin.create_list(settings, None, new(fed)).mailing_list
    president = f.role("president", "Président")
    boss = f.member(email="boss@example.org", licence_number="A-13-999999")
    rules = PostingRules("roles", False, (president.id,), fed["cd13"].id, "",
                         "a-13-999999\nmod@example.org")
    admin.set_posting_rules(fed["regional"], ml, rules)
    ml = MailingList.get_by_id(ml.id)
    assert (ml.post_policy, ml.hold_unauthorised) == ("roles", False)
    [perm] = PostingPermission.select()
    assert (perm.role_id, perm.structure_id) == (president.id, fed["cd13"].id)
    assert {(m.member_id, m.email) for m in ListModerator.select()} == {(boss.id, None), (None, "mod@example.org")}
    assert admin.posting_rules(ml).moderators.splitlines() == ["A-13-999999", "mod@example.org"]
    with pytest.raises(AdminError, match="bad_lines"):
        admin.set_posting_rules(None, ml, PostingRules("addresses", True, addresses="ok@x.org\nnope"))
    with pytest.raises(staff.NotAllowed):
        admin.set_posting_rules(fed["regional"], ml, PostingRules("roles", True, (president.id,), fed["bretagne"].id))
    admin.set_posting_rules(None, ml, PostingRules("addresses", True, addresses="Ok@X.org"))
    assert [p.email_key for p in PostingPermission.select()] == ["ok@x.org"]
    event = AuditEvent.select().where(AuditEvent.action == "list.posting_changed").order_by(AuditEvent.id).first()
    assert json.loads(event.detail)["roles"] == ["president"]


def test_audit_log_is_scoped(settings, fed):
    bretons = f.mailing_list("bretons", fed["national"], fed["bretagne"])
    admin.create_list(settings, fed["regional"], new(fed))
    admin.delete_lists(fed["admin"], [bretons.id])
    mine = [e.action for e in staff.audit_events(fed["regional"])]
    assert "list.created" in mine and "list.deleted" not in mine
    everything = [e.action for e in staff.audit_events(fed["admin"])]
    assert "list.deleted" in everything
    filtered = staff.audit_events(fed["admin"], staff.AuditFilter(action="list.deleted", actor=fed["admin"].licence_number,
                                                                   since=date(2000, 1, 1)))
    assert [e.object_id for e in filtered] == [bretons.id]
    assert list(staff.audit_events(fed["admin"], staff.AuditFilter(until=date(2000, 1, 1)))) == []


def test_the_intake_follows_the_domain_switch_and_deletion(settings, fed):
    from engine.intake.routes import Refused, route

    ml = admin.create_list(settings, None, new(fed)).mailing_list
    assert route(ml.address, b"verp-key").list_id == ml.id
    admin.set_domain_enabled(fed["regional"], fed["local"], False)
    with pytest.raises(Refused, match=r"^550 .*switched off for listes.cd13.example.fr"):
        route(ml.address, b"verp-key")
    admin.set_domain_enabled(fed["regional"], fed["local"], True)
    assert route(ml.address, b"verp-key").list_id == ml.id
    admin.delete_lists(fed["regional"], [ml.id])
    with pytest.raises(Refused, match=r"^550 .*deleted"):
        route(ml.address, b"verp-key")


def test_member_side_events_reach_the_staff_of_the_members_club(settings, fed):
    from engine import audit

    bretagne_club = f.structure("Club breton", StructureKind.CLUB, fed["bretagne"])
    local = f.member(email="local@example.org", club=fed["club"])
    breton = f.member(email="breton@example.org", club=bretagne_club)
    audit.record("email_change.requested", local, actor=local)
    audit.record("email_change.requested", breton, actor=breton)
    audit.record("login.failed", local, actor_label="anonymous")
    seen = [(e.action, e.object_id) for e in staff.audit_events(fed["regional"])]
    assert ("email_change.requested", local.id) in seen and ("login.failed", local.id) in seen
    assert ("email_change.requested", breton.id) not in seen
    assert len(list(staff.audit_events(fed["admin"]))) == 3
