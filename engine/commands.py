"""Command-line commands of the engine (click, no Flask): database, demo data, configuration.

``portal.cli`` gathers these with the portal's own into the one ``palanquee`` entry point, and
registers them on the Flask app so that ``flask`` reaches them too. Add new engine commands to
``ENGINE_COMMANDS``.
"""

from __future__ import annotations

import sys
import time

import click
import peewee

from engine import db as engine_db
from engine.bounces.commands import bounces_group
from engine.config import Settings, load_settings, settings_table_markdown
from engine.directory.commands import propagate
from engine.post import post_command
from engine.posting.commands import DELIVERABILITY_COMMANDS


def open_database(settings: Settings, *, check: bool = True) -> peewee.Database:
    """Connect the models to the configured database; refuse a database that is behind. The database
    object already bound to that URL is reused (commands run in one process, as tests do, share it)."""
    database = engine_db.shared(settings.database_url)
    database.connect(reuse_if_open=True)
    if check:
        engine_db.check_schema(database)
    return database


@click.group("db")
def db_group() -> None:
    """Database schema: status and upgrade."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to the current schema."""
    settings = load_settings()
    database = open_database(settings, check=False)
    applied = engine_db.upgrade(database)
    click.echo(f"applied: {', '.join(applied)}" if applied else "the database is up to date")


@db_group.command("status")
def db_status() -> None:
    """List migrations and whether each is applied."""
    settings = load_settings()
    database = open_database(settings, check=False)
    for migration in engine_db.runner(database).status():
        mark = "applied" if migration.applied else "PENDING"
        click.echo(f"{mark:8} {migration.name}")


@click.command("demo-data")
@click.option("--members", "count", default=2000, show_default=True, help="number of members")
@click.option("--seed", default=2026, show_default=True, help="random seed (same seed, same federation)")
def demo_data(count: int, seed: int) -> None:
    """Build a synthetic federation (refuses a database that already has members)."""
    from engine import demo

    settings = load_settings()
    open_database(settings)
    started = time.perf_counter()
    try:
        summary = demo.build(settings, members=count, seed=seed, progress=click.echo)
    except demo.AlreadyPopulated as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"built in {time.perf_counter() - started:.1f} s")
    click.echo(demo.describe(summary))


@click.command("config")
@click.option("--markdown", is_flag=True, help="print the table of variables (for the README)")
def config_command(markdown: bool) -> None:
    """Show the settings in force and which are missing or wrong (works before the first start)."""
    if markdown:
        click.echo(settings_table_markdown())
        return
    from engine import settings_report

    rows = settings_report.report()
    click.echo(settings_report.render(rows))
    if any(row.value == "INVALID" for row in rows):
        raise SystemExit(2)


@click.command("import-members")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--overwrite-member-emails", is_flag=True,
              help="also replace addresses that members changed themselves since the last import")
@click.option("--as-staff", "as_staff", metavar="LICENCE", default=None,
              help="import with the authority of this staff member, as the upload page does (default: the system)")
def import_members_command(path: str, overwrite_member_emails: bool, as_staff: str | None) -> None:
    """Import the federation's member export (CSV, see docs/import.md); safe to run again."""
    from engine.directory import importer, staff
    from engine.directory.models import Member
    from engine.lists.authority import rights_beyond

    settings = load_settings()
    open_database(settings)
    actor = None
    if as_staff is not None:
        actor = Member.get_or_none(Member.licence_number == as_staff.strip().upper())
        if actor is None or not staff.is_staff(actor):
            raise click.ClickException(f"{as_staff}: no staff member has this licence number")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        total = max(sum(1 for _ in handle) - 1, 0)
        handle.seek(0)
        with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
            done = [0]

            def advance(rows: int) -> None:
                bar.update(rows - done[0])
                done[0] = rows

            try:
                report = importer.import_members(settings, handle, actor=actor, rights_beyond=rights_beyond,
                                                 overwrite_emails=overwrite_member_emails, progress=advance,
                                                 source=path)
            except importer.ImportFileError as exc:
                raise click.ClickException(str(exc)) from exc
    click.echo(importer.summary_text(report))
    if report.bad:
        raise SystemExit(1)


@click.command("engine")
@click.option("--delivery-only", is_flag=True, help="only deliver (a helper process of another engine)")
@click.option("--intake-only", is_flag=True, hidden=True, help="an intake worker of another engine (engine/prefork.py)")
@click.option("--smtp-fd", type=int, hidden=True, help="an intake worker's SMTP listening socket, bound by its engine")
@click.option("--lmtp-fd", type=int, hidden=True, help="an intake worker's LMTP listening socket, bound by its engine")
@click.option("--signal-fd", type=int, hidden=True, help="an intake worker's end of its engine's signal channel")
def engine_command(delivery_only: bool, intake_only: bool, smtp_fd: int | None, lmtp_fd: int | None,
                   signal_fd: int | None) -> None:
    """Run the list engine: SMTP/LMTP intake, delivery and scheduled jobs (several may share one database)."""
    import socket

    from engine.main import serve

    settings = load_settings()
    open_database(settings).close()  # refuses a database that is behind
    sockets, signal_socket = None, None
    if intake_only:
        if smtp_fd is None:
            raise click.UsageError("--intake-only needs --smtp-fd (its engine starts it)")
        sockets = {kind: socket.socket(fileno=fd) for kind, fd in (("smtp", smtp_fd), ("lmtp", lmtp_fd))
                   if fd is not None}
        if signal_fd is not None:
            signal_socket = socket.socket(fileno=signal_fd)
            signal_socket.setblocking(False)
    serve(settings, delivery_only=delivery_only, intake_only=intake_only, sockets=sockets, signal_socket=signal_socket)


@click.command("backup")
@click.argument("target", type=click.Path(dir_okay=False, writable=True))
def backup_command(target: str) -> None:
    """Write a consistent copy of the running database to TARGET (SQLite: online backup; PostgreSQL: pg_dump)."""
    from pathlib import Path

    from engine import backup

    settings = load_settings()
    try:
        made = backup.backup(settings.database_url, Path(target))
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    counts = ", ".join(f"{name}: {count}" for name, count in made.counts.items())
    click.echo(f"backup written to {made.path} ({made.kind}{'; ' + counts if counts else ''})")


ENGINE_COMMANDS: list[click.Command] = [db_group, demo_data, config_command, propagate, import_members_command,
                                        engine_command, post_command, backup_command, bounces_group,
                                        *DELIVERABILITY_COMMANDS]
