"""``palanquee bounces …``: classify returned messages the way the engine does."""

from __future__ import annotations

import sys

import click

from engine.bounces.classify import classify


@click.group("bounces")
def bounces_group() -> None:
    """Returned mail (bounces): classification."""


@bounces_group.command("classify")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
def classify_command(files: tuple[str, ...]) -> None:
    """Print, for each raw message FILE (- for standard input), one tab-separated line: the file name,
    the kind (hard, soft, policy, auto-reply, unknown), the enhanced status code when there is one, and
    the failed recipient addresses found (space-separated). Needs no database."""
    failed = False
    for name in files:
        try:
            if name == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(name, "rb") as handle:
                    data = handle.read()
        except OSError as exc:
            click.echo(f"{name}: {exc.strerror}", err=True)
            failed = True
            continue
        click.echo(classify(data).line(name.replace("\t", " ").replace("\n", " ")))
    if failed:
        raise SystemExit(1)
