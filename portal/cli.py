"""The ``palanquee`` command: engine commands, the web server and the all-in-one demo.

Every command is also a ``flask`` command (``flask --app portal …``), since ``create_app``
registers them on ``app.cli``.
"""

from __future__ import annotations

import sys

import click

from engine import db as engine_db
from engine.commands import ENGINE_COMMANDS, open_database
from engine.config import ConfigError, load_settings


@click.command("web")
@click.option("--debug", is_flag=True, help="Flask's development server: reload on code changes, show tracebacks")
def web(debug: bool) -> None:
    """Serve the portal on PALANQUEE_WEB_LISTEN with gunicorn (PALANQUEE_WEB_WORKERS sync workers)."""
    from portal import create_app

    settings = load_settings()
    app = create_app(settings)
    host, port = settings.web_listen
    if debug:
        app.run(host=host, port=port, debug=True, use_reloader=True)
        return
    from portal.serving import serve

    serve(app, settings, on_ready=lambda url: click.echo(f"portal: {url}", nl=True))


@click.command("demo")
@click.option("--members", default=2000, show_default=True, help="members of the demo federation")
def demo(members: int) -> None:
    """The embedded default: migrate, build demo data if empty, run the portal and the engine."""
    from engine import demo as demo_data
    from portal import create_app

    settings = load_settings(generate_secret=True)
    database = open_database(settings, check=False)
    applied = engine_db.upgrade(database)
    if applied:
        click.echo(f"database upgraded: {', '.join(applied)}")
    if demo_data.is_empty():
        click.echo(f"building the demo federation ({members} members)…")
        summary = demo_data.build(settings, members=members, progress=click.echo)
    else:
        summary = demo_data.existing_summary()
    database.close()
    app = create_app(settings)
    from portal.serving import serve, start_engine

    engine, bound = start_engine()  # a child process: never in the process that forks the web workers
    try:
        smtp_host, smtp_port = bound["smtp"]
        click.echo("")
        click.echo(demo_data.describe(summary))
        click.echo(f"\nlist engine:   SMTP {smtp_host}:{smtp_port}"
                   + (f", LMTP {bound['lmtp'][0]}:{bound['lmtp'][1]}" if "lmtp" in bound else ""))
        click.echo(f"captured mail: {settings.capture_dir} (maildir: every copy the lists send lands here)")
        click.echo(f"database:      {settings.database_url}")
        click.echo("\nsend a message to a list, for example:")
        click.echo(f"  swaks --server {smtp_host}:{smtp_port} --from {demo_data.DEMO_POSTER} "
                   f"--h-From {demo_data.DEMO_POSTER} --to comite_directeur.comite@listes.ffessm-demo.fr "
                   "--header 'Subject: Essai' --body 'Bonjour à tous'")
        serve(app, settings, on_ready=lambda url: click.echo(
            f"\nportal:        {url}  (staff: Messages > Courrier capturé shows every copy)"))
    finally:
        engine.terminate()
        engine.wait(30)



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
