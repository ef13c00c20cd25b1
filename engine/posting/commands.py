"""``palanquee dkim generate|show DOMAIN`` and ``palanquee doctor DOMAIN``: deliverability set-up and checks."""

from __future__ import annotations

import click

from engine.config import load_settings
from engine.posting import doctor, keys


def zone_line(key: keys.DkimKey) -> str:
    """The record as a zone-file line; TXT strings are at most 255 octets (RFC 1035 §3.3.14), so the key is cut."""
    record = key.txt_record()
    chunks = [record[i:i + 250] for i in range(0, len(record), 250)]
    strings = " ".join(f'"{chunk}"' for chunk in chunks)
    return f"{key.dns_name()}. IN TXT ( {strings} )"


@click.group("dkim")
def dkim_group() -> None:
    """DKIM keys of the list domains (stored in the database, used by every engine)."""


@dkim_group.command("generate")
@click.argument("domain")
@click.option("--selector", default=None, help="DNS selector (default: plqYYYYMM, with an e for ed25519)")
@click.option("--algorithm", type=click.Choice(["rsa", "ed25519"]), default="rsa", show_default=True,
              help="rsa: RSA-2048, the signature every receiver checks; ed25519: an optional second one (RFC 8463)")
@click.option("--inactive", is_flag=True,
              help="do not sign with it yet: publish the record, then `palanquee dkim activate DOMAIN SELECTOR`")
def dkim_generate(domain: str, selector: str | None, algorithm: str, inactive: bool) -> None:
    """Create a signing key for DOMAIN and print the DNS record to publish."""
    from engine.commands import open_database

    open_database(load_settings())
    chosen = keys.Algorithm.ED25519 if algorithm == "ed25519" else keys.Algorithm.RSA
    try:
        key = keys.generate(domain, selector, chosen, active=not inactive)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    when = (f"it signs once `palanquee dkim activate {key.domain} {key.selector}` is run" if inactive
            else "it signs from now on")
    click.echo(f"New {key.algorithm} key for {key.domain}, selector {key.selector}; {when}.")
    click.echo(f"Publish this TXT record in the zone of {key.domain}, then check with `palanquee doctor {key.domain}`:")
    click.echo("")
    click.echo(zone_line(key))


@dkim_group.command("activate")
@click.argument("domain")
@click.argument("selector")
def dkim_activate(domain: str, selector: str) -> None:
    """Sign DOMAIN's copies with the key of SELECTOR from now on (after its record is published)."""
    from engine.commands import open_database

    open_database(load_settings())
    try:
        key = keys.activate(domain, selector)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{key.domain}: copies are signed with selector {key.selector} from now on.")


@dkim_group.command("show")
@click.argument("domain")
def dkim_show(domain: str) -> None:
    """Print the DNS records of DOMAIN's keys (active ones sign)."""
    from engine.commands import open_database

    open_database(load_settings())
    rows = keys.DkimKey.select().where(keys.DkimKey.domain == domain.strip().lower()).order_by(keys.DkimKey.id)
    if not rows.exists():
        raise click.ClickException(f"no key for {domain}: run `palanquee dkim generate {domain}`")
    for key in rows:
        click.echo(f"{'active ' if key.active else 'retired'} {zone_line(key)}")


@click.command("doctor")
@click.argument("domain")
def doctor_command(domain: str) -> None:
    """Check what DOMAIN publishes in DNS (MX, SPF, DKIM, DMARC, reverse DNS) and say what to fix."""
    from engine.commands import open_database

    settings = load_settings()
    open_database(settings)
    findings = doctor.diagnose(domain, settings)
    for finding in findings:
        click.echo(finding.line())
    if not all(finding.ok for finding in findings):
        raise SystemExit(1)


DELIVERABILITY_COMMANDS: list[click.Command] = [dkim_group, doctor_command]
