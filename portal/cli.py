"""The ``palanquee`` command: engine commands, the web server and the all-in-one demo.

Every command is also a ``flask`` command (``flask --app portal …``), since ``create_app``
registers them on ``app.cli``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
from pathlib import Path

import click

from engine import db as engine_db
from engine import notices
from engine.commands import ENGINE_COMMANDS, open_database
from engine.config import ConfigError, Settings, load_settings, url_of_listen_address


@click.command("web")
@click.option("--debug", is_flag=True, help="Flask's development server: reload on code changes, show tracebacks")
def web(debug: bool) -> None:
    """Serve the portal on PALANQUEE_WEB_LISTEN with gunicorn (PALANQUEE_WEB_WORKERS sync workers)."""
    from portal import create_app
    from portal.serving import serve

    settings = load_settings()
    if debug:
        host, port = settings.web_listen
        create_app(settings).run(host=host, port=port, debug=True, use_reloader=True)
        return
    listener, settings = _bind_portal(settings)
    serve(create_app(settings), settings, listener, on_ready=lambda: click.echo(f"portal: {settings.base_url}/"))


@click.command("demo")
@click.option("--members", default=2000, show_default=True, help="members of the demo federation")
def demo(members: int) -> None:
    """The embedded default: migrate, build demo data if empty, run the portal and the engine."""
    from engine import demo as demo_data

    _stop_on_signals()
    settings = load_settings(generate_secret=True, defaults=demo_data.SETTING_DEFAULTS)
    listener, settings = _bind_portal(settings)  # first: a port in use stops the demo at once
    try:
        _serve(settings, listener, _prepare(settings, members))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, at any step: everything below is closed on the way out
        pass
    finally:
        if listener.fileno() != -1:  # not handed to gunicorn (which closes what it was given)
            listener.close()


def _prepare(settings: Settings, members: int) -> str:
    """Migrate, build the demo federation into an empty database, make the capture; returns the summary."""
    from engine import demo as demo_data

    database = open_database(settings, check=False)
    try:
        applied = engine_db.upgrade(database)
        if applied:
            click.echo(f"database upgraded: {', '.join(applied)}")
        if demo_data.is_empty():
            click.echo(f"building the demo federation ({members} members)…")
            summary = demo_data.build(settings, members=members, progress=click.echo)
        else:
            summary = demo_data.existing_summary()
    finally:
        database.close()
    demo_data.prepare_capture(settings)
    return demo_data.describe(summary)


def _serve(settings: Settings, listener: socket.socket, summary: str) -> None:
    """The engine in a child process, the portal (gunicorn) on ``listener`` in this one, until interrupted.

    The engine never lives in the process that forks the web workers; it gets the demo's settings: the
    base URL of the port bound above, its notices' sender, no DNS, no inbound authentication."""
    from portal import create_app
    from portal.serving import serve, start_engine

    app = create_app(settings)
    engine, bound = start_engine(settings)  # these very settings: the bound port's base URL, the demo's defaults
    try:
        click.echo("\n" + summary)
        click.echo(_where(settings, bound), nl=False)
        serve(app, settings, listener, on_ready=lambda: click.echo(
            f"\n\nserving the portal on {settings.base_url}/ (Ctrl-C stops the demo)"))
    finally:
        engine.terminate()
        engine.wait(30)


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM stop the demo, even when it was started with SIGINT ignored (a shell's
    background job, some CI runners), where Python would otherwise never raise KeyboardInterrupt."""

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def _bind_portal(settings: Settings) -> tuple[socket.socket, Settings]:
    """Listen on PALANQUEE_WEB_LISTEN now (port 0: any free port); when the base URL is the one derived
    from the listen address, it follows the port actually bound, so that links in mail open this portal."""
    host, port = settings.web_listen
    listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    bound = (host, int(listener.getsockname()[1]))
    if settings.base_url == url_of_listen_address(settings.web_listen):
        settings = dataclasses.replace(settings, base_url=url_of_listen_address(bound))
    return listener, dataclasses.replace(settings, web_listen=bound)


def _where(settings: Settings, bound: dict[str, tuple[str, int]]) -> str:
    """The addresses the demo serves, where its mail goes, and how to post to a list."""
    from engine import demo as demo_data

    smtp = "{}:{}".format(*bound["smtp"])
    lines = [
        f"\nportal:        {settings.base_url}/  (staff: Messages > Courrier capturé shows every copy)",
        f"list engine:   SMTP {smtp}" + (", LMTP {}:{}".format(*bound["lmtp"]) if "lmtp" in bound else ""),
        f"captured mail: {settings.capture_dir}/new/ (Maildir: every copy the lists send, every notice)",
        f"mail from:     {notices.sender_address(settings)}",
        f"database:      {settings.database_url}",
        "\npost a message to a list, as the demo member who sits on the Provence board:",
        f"  {_palanquee()} post --server {smtp} --from {demo_data.DEMO_POSTER} --to {demo_data.DEMO_LIST} "
        "--subject Essai 'Bonjour à tous'",
        f"  (or: swaks --server {smtp} --from {demo_data.DEMO_POSTER} --h-From {demo_data.DEMO_POSTER} "
        f"--to {demo_data.DEMO_LIST} --header 'Subject: Essai' --body 'Bonjour à tous')",
    ]
    return "\n".join(lines)


def _palanquee() -> str:
    """How to call this very command from the current folder (``.venv/bin/palanquee`` after bin/demo)."""
    program = Path(sys.argv[0])
    if program.name != "palanquee" or not program.exists():
        return "palanquee"
    relative = os.path.relpath(program.resolve().parent, Path.cwd())
    return str(program.resolve()) if relative.startswith("..") else f"{relative}/palanquee"


PORTAL_COMMANDS: list[click.Command] = [web, demo]
ALL_COMMANDS = [*ENGINE_COMMANDS, *PORTAL_COMMANDS]


@click.group()
def cli() -> None:
    """Palanquée: member portal and mailing-list server."""


for _command in ALL_COMMANDS:
    cli.add_command(_command)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except (ConfigError, engine_db.SchemaBehindError) as exc:
        click.echo(f"palanquee: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
