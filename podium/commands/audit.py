"""``podium audit``: check the hash chains of the audit log (the file, or the store's chains),
print their heads, show entries."""

from __future__ import annotations

import json
from pathlib import Path

import click

from podium.commands._access import CONFIG_OPTION, load, with_store
from podium.policy.audit import AuditLog, Report, verify
from podium.policy.audit_store import (
    StoreReport,
    dump_heads,
    latest_entries,
    load_heads,
    parse_head,
    read_heads,
    verify_store,
)


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
        "--store",
        "in_store",
        is_flag=True,
        help="Check every chain in the store (the default when access.audit.backend is store).",
    )
    @click.option(
        "--expect",
        help="A head noted earlier, as SEQ:HASH (from `podium audit head`): the log must still "
        "hold that entry unchanged. With --store: a file of heads from `podium audit heads`.",
    )
    @click.option("--json", "as_json", is_flag=True)
    def verify_command(
        config_path: str | None,
        file: str | None,
        in_store: bool,
        expect: str | None,
        as_json: bool,
    ) -> None:
        """Check every entry and the chain; exit 1 and name each place that was tampered with."""
        if in_store or (file is None and load(config_path).access.audit.backend == "store"):
            _verify_store(config_path, expect, as_json)
            return
        anchor = None
        if expect:
            try:
                anchor = parse_head(expect)
            except ValueError:
                raise click.BadParameter(
                    "use SEQ:HASH (64 hex digits)", param_hint="--expect"
                ) from None
        path = _path(config_path, file)
        report = verify(path, expect=anchor)
        if not path.exists() and not as_json:
            # Not "TAMPERED": nothing here says a log was ever written. Still exit 1, since a
            # log that was there and is gone looks the same.
            click.echo(
                f"MISSING: no audit log at {path}: nothing to verify (check "
                "access.audit.path, or pass --file); if Podium wrote one there, it was removed",
                err=True,
            )
            raise SystemExit(1)
        if as_json:
            click.echo(json.dumps({"file": str(path), **_report_json(report)}, indent=2))
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

    @audit.command("heads")
    @CONFIG_OPTION
    def heads(config_path: str | None) -> None:
        """Print every chain's head in the store as JSON: keep it outside the database, and
        check the store against it later with `podium audit verify --store --expect FILE`."""
        config = load(config_path)
        click.echo(dump_heads(with_store(config, read_heads)))

    @audit.command("head")
    @CONFIG_OPTION
    @click.option("--file", type=click.Path(dir_okay=False))
    def head(config_path: str | None, file: str | None) -> None:
        """Print SEQ:HASH of the last entry: note it somewhere the log's writer cannot edit."""
        if file is None and load(config_path).access.audit.backend == "store":
            raise click.ClickException(
                "access.audit.backend is store: `podium audit heads` prints every chain's head"
            )
        current = AuditLog(_path(config_path, file)).head()
        click.echo(f"{current.seq}:{current.hash}")

    @audit.command("show")
    @CONFIG_OPTION
    @click.option("--file", type=click.Path(dir_okay=False))
    @click.option("--last", type=int, default=20, show_default=True)
    def show(config_path: str | None, file: str | None, last: int) -> None:
        """Print the last entries (of every chain, by time, when the log is in the store)."""
        if file is None and (config := load(config_path)).access.audit.backend == "store":
            for entry in with_store(config, lambda store: latest_entries(store, last)):
                click.echo(json.dumps(entry))
            return
        path = _path(config_path, file)
        try:
            lines = path.read_bytes().splitlines()[-last:] if last > 0 else []
        except FileNotFoundError:
            raise click.ClickException(f"no audit log at {path}") from None
        for raw in lines:
            click.echo(raw.decode("utf-8", "replace"))


def _report_json(report: Report) -> dict[str, object]:
    return {
        "ok": report.ok,
        "entries": report.entries,
        "head": {"seq": report.head.seq, "hash": report.head.hash},
        "problems": [
            {"line": p.line, "entry": p.seq, "message": p.message} for p in report.problems
        ],
    }


def _verify_store(config_path: str | None, expect: str | None, as_json: bool) -> None:
    anchors = None
    if expect:
        try:
            anchors = load_heads(Path(expect).read_text())
        except (OSError, ValueError) as error:
            raise click.BadParameter(f"{expect}: {error}", param_hint="--expect") from None
    config = load(config_path)
    result: StoreReport = with_store(config, lambda store: verify_store(store, expect=anchors))
    if as_json:
        body = {
            "ok": result.ok,
            "entries": result.entries,
            "chains": {chain: _report_json(report) for chain, report in result.chains.items()},
            "missing_chains": result.missing,
        }
        click.echo(json.dumps(body, indent=2))
    elif result.ok:
        click.echo(f"ok: {len(result.chains)} chains, {result.entries} entries, all intact")
    else:
        click.echo("TAMPERED: the audit chains in the store", err=True)
        for chain, report in result.chains.items():
            for problem in report.problems:
                click.echo(f"  chain {chain}: {problem}", err=True)
        for chain in result.missing:
            click.echo(
                f"  chain {chain}: recorded in the heads but gone from the store (deleted)",
                err=True,
            )
    fallback = config.access.audit_path(config.resolved_data_dir())
    if fallback.exists() and not as_json:
        click.echo(
            f"note: {fallback} holds entries written while the store was unreachable; "
            f"check it with `podium audit verify --file {fallback}`",
            err=True,
        )
    if not result.ok:
        raise SystemExit(1)
