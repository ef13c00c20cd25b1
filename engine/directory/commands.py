"""Commands of the directory: ``palanquee propagate`` applies the address changes whose time has come."""

from __future__ import annotations

import click

from engine.config import load_settings


@click.command("propagate")
def propagate() -> None:
    """Apply due address changes now (the engine's scheduler also does it every minute)."""
    from engine.commands import open_database
    from engine.directory.email_change import apply_due_changes

    settings = load_settings()
    database = open_database(settings)
    try:
        applied = apply_due_changes()
    finally:
        database.close()
    click.echo(f"{applied} address change(s) applied")
