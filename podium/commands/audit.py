"""``podium audit``: check the hash chain of the audit log, print its head, show entries."""

from __future__ import annotations

import json
from pathlib import Path

import click

from podium.commands._access import CONFIG_OPTION, load
from podium.policy.audit import AuditLog, Head, verify


def _path(config_path: str | None, file: str | None) -> Path:
    if file is not None:
        return Path(file)
    config = load(config_path)
    return config.access.audit_path(config.resolved_data_dir())


def register(main: click.Group) -> None:
    @main.group()
    def audit() -> None:
        """The tamper-evident log of admin actions and policy decisions."""

    @audit.command("verify")
    @CONFIG_OPTION
    @click.option("--file", type=click.Path(dir_okay=False), help="The log (default: config's).")
    @click.option(
        "--expect",
        help="A head noted earlier, as SEQ:HASH (from `podium audit head`): the log must still "
        "hold that entry unchanged.",
    )
    @click.option("--json", "as_json", is_flag=True)
    def verify_command(
        config_path: str | None, file: str | None, expect: str | None, as_json: bool
    ) -> None:
        """Check every entry and the chain; exit 1 and name each place that was tampered with."""
        anchor = None
        if expect:
            seq, sep, digest = expect.partition(":")
            if not sep or not seq.isdigit() or len(digest) != 64:
                raise click.BadParameter("use SEQ:HASH (64 hex digits)", param_hint="--expect")
            anchor = Head(seq=int(seq), hash=digest)
        path = _path(config_path, file)
        report = verify(path, expect=anchor)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "file": str(path),
                        "ok": report.ok,
                        "entries": report.entries,
                        "head": {"seq": report.head.seq, "hash": report.head.hash},
                        "problems": [
                            {"line": p.line, "entry": p.seq, "message": p.message}
                            for p in report.problems
                        ],
                    },
                    indent=2,
                )
            )
        elif report.ok:
            click.echo(
                f"ok: {report.entries} entries, chain intact; head {report.head.seq}:"
                f"{report.head.hash}"
            )
        else:
            click.echo(f"TAMPERED: {path}: {len(report.problems)} problem(s)", err=True)
            for problem in report.problems:
                click.echo(f"  {problem}", err=True)
        if not report.ok:
            raise SystemExit(1)

    @audit.command("head")
    @CONFIG_OPTION
    @click.option("--file", type=click.Path(dir_okay=False))
    def head(config_path: str | None, file: str | None) -> None:
        """Print SEQ:HASH of the last entry: note it somewhere the log's writer cannot edit."""
        current = AuditLog(_path(config_path, file)).head()
        click.echo(f"{current.seq}:{current.hash}")

    @audit.command("show")
    @CONFIG_OPTION
    @click.option("--file", type=click.Path(dir_okay=False))
    @click.option("--last", type=int, default=20, show_default=True)
    def show(config_path: str | None, file: str | None, last: int) -> None:
        """Print the last entries."""
        path = _path(config_path, file)
        try:
            lines = path.read_bytes().splitlines()[-last:] if last > 0 else []
        except FileNotFoundError:
            raise click.ClickException(f"no audit log at {path}") from None
        for raw in lines:
            click.echo(raw.decode("utf-8", "replace"))
