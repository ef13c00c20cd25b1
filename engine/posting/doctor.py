"""``palanquee doctor DOMAIN``: what a list domain publishes in DNS, checked against this installation.

MX (mail to the lists and their bounces must arrive), SPF (RFC 7208: it must pass for every sending
address), the DKIM record of each active key (RFC 6376 §3.6: the published key must be ours), DMARC
(RFC 7489: a record must exist) and forward-confirmed reverse DNS of the sending addresses (Gmail,
Yahoo and Orange refuse mail without it). Each finding says in plain words what to publish or fix.
All lookups go through the engine's resolver (tests replace it).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from engine import resolver
from engine.config import Settings
from engine.posting import dmarc, keys


@dataclass(frozen=True)
class Finding:
    check: str  # MX, SPF, DKIM, DMARC, PTR
    ok: bool
    text: str

    def line(self) -> str:
        return f"{'ok ' if self.ok else 'FIX'}  {self.check:<5} {self.text}"


def _lookup(name: str, rdtype: str) -> list[str] | None:
    try:
        return list(resolver.current().lookup(name, rdtype).records)
    except resolver.TemporaryDnsError:
        return None


def check_mx(domain: str) -> Finding:
    records = _lookup(domain, "MX")
    if records is None:
        return Finding("MX", False, f"DNS did not answer for {domain} MX; try again later")
    if not records:
        return Finding("MX", False, f"{domain} has no MX record: replies, -request and bounces cannot reach the "
                       f"lists. Publish one, for example: {domain}. MX 10 mx.{domain}.")
    return Finding("MX", True, "mail for the lists goes to " + ", ".join(sorted(records)))


def check_spf(domain: str, sending_ips: tuple[str, ...]) -> Finding:
    records = [text for text in (_lookup(domain, "TXT") or []) if text.lower().startswith("v=spf1")]
    if len(records) != 1:
        problem = "has no SPF record" if not records else f"has {len(records)} SPF records (RFC 7208 §4.5: exactly one)"
        hint = " ".join(f"ip{ipaddress.ip_address(ip).version}:{ip}" for ip in sending_ips) or "ip4:YOUR.SENDING.IP"
        return Finding("SPF", False, f"{domain} {problem}; publish one TXT record: \"v=spf1 mx {hint} -all\"")
    if not sending_ips:
        return Finding("SPF", True, f"record found ({records[0]}); set PALANQUEE_SENDING_IPS to check it "
                       "allows the addresses mail leaves from")
    spf = resolver.pyspf()
    refused = []
    for ip in sending_ips:
        result, explanation = spf.check2(i=ip, s=f"postmaster@{domain}", h=domain, timeout=10)
        if result != "pass":
            refused.append(f"{ip} ({result}{': ' + explanation if explanation else ''})")
    if refused:
        return Finding("SPF", False, f"the record \"{records[0]}\" does not allow " + ", ".join(refused)
                       + ": add ip4:/ip6: mechanisms for them, and keep it within 10 DNS lookups")
    return Finding("SPF", True, "passes for " + ", ".join(sending_ips))


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = "".join(value.split())
    return tags


def check_dkim(domain: str, settings: Settings) -> list[Finding]:
    if settings.dkim_signing != "engine":
        return [Finding("DKIM", True, "signing is left to the smarthost (PALANQUEE_DKIM_SIGNING=smarthost): "
                        "check its selector's record there")]
    rows = list(keys.DkimKey.select().where((keys.DkimKey.domain == domain) & keys.DkimKey.active))
    if not rows:
        return [Finding("DKIM", False, f"no DKIM key for {domain}: run `palanquee dkim generate {domain}` and "
                        "publish the TXT record it prints")]
    findings = []
    for row in rows:
        name, expected = row.dns_name(), row.txt_record()
        published = [text for text in (_lookup(name, "TXT") or []) if "p=" in text]
        wanted = _tags(expected)["p"]
        if not published:
            findings.append(Finding("DKIM", False, f"nothing published at {name}; publish TXT \"{expected}\""))
        elif _tags(published[0]).get("p") != wanted:
            findings.append(Finding("DKIM", False, f"the key published at {name} is not this installation's "
                                    f"(an old or mistyped key); replace it with TXT \"{expected}\""))
        else:
            findings.append(Finding("DKIM", True, f"{name} publishes the {row.algorithm} key that signs the copies"))
    return findings


def check_dmarc(domain: str) -> Finding:
    policy = dmarc.lookup(domain, fresh=True)
    if policy.p == "temperror":
        return Finding("DMARC", False, f"DNS did not answer for _dmarc.{domain}; try again later")
    if not policy.published:
        return Finding("DMARC", False, f"no DMARC record: Gmail, Yahoo and Outlook require one from bulk senders. "
                       f"Publish TXT at _dmarc.{domain}: \"v=DMARC1; p=none; rua=mailto:postmaster@{domain}\" "
                       "and move to p=quarantine once reports show every copy passes")
    where = f" (inherited from {policy.domain})" if policy.domain != domain else ""
    return Finding("DMARC", True, f"policy p={policy.p}{where}; copies pass it through the list domain's "
                   "DKIM signature (aligned d=)")


def check_ptr(ip: str) -> Finding:
    reverse = ipaddress.ip_address(ip).reverse_pointer
    names = _lookup(reverse, "PTR") or []
    if not names:
        return Finding("PTR", False, f"{ip} has no reverse DNS name: ask its provider for a PTR record naming a "
                       "host whose A/AAAA record points back to it")
    for name in names:
        if ip in (_lookup(name, "AAAA" if ":" in ip else "A") or []):
            return Finding("PTR", True, f"{ip} is {name}, which points back to it")
    return Finding("PTR", False, f"{ip} is named {names[0]}, but that name does not point back to {ip}: "
                   "fix the A/AAAA record or the PTR")


def diagnose(domain: str, settings: Settings) -> list[Finding]:
    domain = domain.strip().lower().rstrip(".").encode("idna").decode("ascii")
    findings = [check_mx(domain), check_spf(domain, settings.sending_ips), *check_dkim(domain, settings),
                check_dmarc(domain)]
    return findings + [check_ptr(ip) for ip in settings.sending_ips]
