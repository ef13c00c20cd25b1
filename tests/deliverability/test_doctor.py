"""``palanquee doctor DOMAIN`` against a replaced resolver: what is right, and plain words on what to fix."""

from __future__ import annotations

import dataclasses

import pytest

from engine.config import Settings
from engine.posting import doctor, keys
from engine.resolver import StaticResolver
from tests.deliverability.conftest import invoke, published

DOMAIN = "listes.example.fr"
IP = "192.0.2.10"


@pytest.fixture
def good_zone(db, dns: StaticResolver) -> StaticResolver:  # type: ignore[no-untyped-def]
    published(dns, keys.generate(DOMAIN))
    dns.add(DOMAIN, "MX", "10 mx.example.fr")
    dns.add(DOMAIN, "TXT", ["google-site-verification=abc", f"v=spf1 mx ip4:{IP} -all"])
    dns.add("mx.example.fr", "A", "192.0.2.25")
    dns.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.fr")
    dns.add("10.2.0.192.in-addr.arpa", "PTR", "out.example.fr")
    dns.add("out.example.fr", "A", IP)
    return dns


@pytest.fixture
def sending(settings: Settings) -> Settings:
    return dataclasses.replace(settings, sending_ips=(IP,))


def by_check(findings: list[doctor.Finding]) -> dict[str, doctor.Finding]:
    return {finding.check: finding for finding in findings}


def test_a_correct_zone_passes_every_check(good_zone: StaticResolver, sending: Settings) -> None:
    findings = doctor.diagnose(DOMAIN, sending)
    assert [f.check for f in findings] == ["MX", "SPF", "DKIM", "DMARC", "PTR"]
    assert all(f.ok for f in findings), [f.line() for f in findings]


def test_an_empty_zone_says_what_to_publish(db, sending: Settings) -> None:  # type: ignore[no-untyped-def]
    found = by_check(doctor.diagnose(DOMAIN, sending))
    assert not any(f.ok for f in found.values())
    assert "no MX record" in found["MX"].text and f"{DOMAIN}. MX 10" in found["MX"].text
    assert f'"v=spf1 mx ip4:{IP} -all"' in found["SPF"].text
    assert f"palanquee dkim generate {DOMAIN}" in found["DKIM"].text
    assert f"_dmarc.{DOMAIN}" in found["DMARC"].text and "p=none" in found["DMARC"].text
    assert "no reverse DNS" in found["PTR"].text


def test_spf_that_does_not_allow_the_sending_address(good_zone: StaticResolver, sending: Settings) -> None:
    good_zone.add(DOMAIN, "TXT", "v=spf1 ip4:198.51.100.0/24 -all")
    finding = by_check(doctor.diagnose(DOMAIN, sending))["SPF"]
    assert not finding.ok and f"does not allow {IP} (fail" in finding.text


def test_two_spf_records_are_an_error(good_zone: StaticResolver, sending: Settings) -> None:
    good_zone.add(DOMAIN, "TXT", [f"v=spf1 ip4:{IP} -all", "v=spf1 mx -all"])
    finding = by_check(doctor.diagnose(DOMAIN, sending))["SPF"]
    assert not finding.ok and "2 SPF records" in finding.text


def test_a_published_key_that_is_not_ours(good_zone: StaticResolver, sending: Settings) -> None:
    key = keys.DkimKey.get()
    good_zone.add(key.dns_name(), "TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAold")
    finding = by_check(doctor.diagnose(DOMAIN, sending))["DKIM"]
    assert not finding.ok and "not this installation's" in finding.text and key.txt_record() in finding.text


def test_a_reverse_name_that_does_not_point_back(good_zone: StaticResolver, sending: Settings) -> None:
    good_zone.add("out.example.fr", "A", "192.0.2.99")
    finding = by_check(doctor.diagnose(DOMAIN, sending))["PTR"]
    assert not finding.ok and "does not point back" in finding.text


def test_an_inherited_dmarc_policy_is_accepted(good_zone: StaticResolver, sending: Settings) -> None:
    good_zone.records.pop((f"_dmarc.{DOMAIN}", "TXT"))
    good_zone.add("_dmarc.example.fr", "TXT", "v=DMARC1; p=reject")
    finding = by_check(doctor.diagnose(DOMAIN, sending))["DMARC"]
    assert finding.ok and "inherited from example.fr" in finding.text


def test_signing_left_to_the_smarthost_needs_no_key_of_ours(db, dns: StaticResolver,  # type: ignore[no-untyped-def]
                                                          sending: Settings) -> None:
    # No key in the database and none published: with the smarthost signing, that is not a fault of this domain,
    # and the doctor says where to look instead; the other checks still run.
    dns.add(DOMAIN, "MX", "10 mx.example.fr")
    found = by_check(doctor.diagnose(DOMAIN, dataclasses.replace(sending, dkim_signing="smarthost")))
    assert found["DKIM"].ok and "smarthost" in found["DKIM"].text and "PALANQUEE_DKIM_SIGNING" in found["DKIM"].text
    assert found["MX"].ok and not found["SPF"].ok
    assert not by_check(doctor.diagnose(DOMAIN, sending))["DKIM"].ok  # the same zone when the engine signs


def test_the_command_prints_one_line_per_check_and_fails_when_something_is_wrong(
        good_zone: StaticResolver, cli_env: dict[str, str]) -> None:
    from engine.commands import ENGINE_COMMANDS

    command = next(c for c in ENGINE_COMMANDS if c.name == "doctor")
    env = {**cli_env, "PALANQUEE_SENDING_IPS": IP}
    result = invoke(command, [DOMAIN], env)
    assert result.exit_code == 0, result.output
    assert [line.split()[0:2] for line in result.output.splitlines()] == [
        ["ok", "MX"], ["ok", "SPF"], ["ok", "DKIM"], ["ok", "DMARC"], ["ok", "PTR"]]
    good_zone.records.pop((f"_dmarc.{DOMAIN}", "TXT"))
    result = invoke(command, [DOMAIN], env)
    assert result.exit_code == 1 and "FIX  DMARC" in result.output
