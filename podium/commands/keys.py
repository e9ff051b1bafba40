"""``podium keys``: create, list, revoke and rotate virtual keys.

By default works offline on the store the gateway uses (a running gateway sees changes within
its key cache's TTL, ``access.auth.cache_ttl``) and appends every change to the audit log. With
``--url`` (or ``$PODIUM_URL``) it goes through a running gateway's admin API instead, which
audits the change itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from podium.commands._access import CONFIG_OPTION, audit_log, load, seconds, with_keys
from podium.commands.workers import Admin
from podium.policy.audit import cli_actor
from podium.policy.keys import PERIODS, KeyProblem, KeyRecord, NewKey

F = TypeVar("F", bound=Callable[..., Any])


def remote(command: F) -> F:
    """``--url`` and ``--admin-key``: use a running gateway's admin API."""
    command = click.option(
        "--admin-key", envvar="PODIUM_ADMIN_KEY", help="Admin key ($PODIUM_ADMIN_KEY)."
    )(command)
    return click.option(
        "--url",
        envvar="PODIUM_URL",
        help="A running gateway ($PODIUM_URL): go through its admin API instead of the store.",
    )(command)


def from_public(data: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        key_id=data["key_id"],
        key_hash="",
        owner=data["owner"],
        name=data.get("name") or "",
        is_admin=bool(data.get("admin")),
        scopes=list(data.get("scopes") or ["*"]),
        metadata=dict(data.get("metadata") or {}),
        budget_usd=data.get("budget_usd"),
        budget_period=data.get("budget_period") or "month",
        rpm=data.get("rpm"),
        tpm=data.get("tpm"),
        expires_at=data.get("expires_at"),
        created_at=data.get("created_at") or 0.0,
        revoked_at=data.get("revoked_at"),
    )


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M")


def _limits(record: KeyRecord) -> str:
    parts = []
    if record.budget_usd is not None:
        parts.append(f"${record.budget_usd:g}/{record.budget_period}")
    if record.rpm:
        parts.append(f"{record.rpm} rpm")
    if record.tpm:
        parts.append(f"{record.tpm} tpm")
    return ", ".join(parts) or "-"


def _metadata(pairs: tuple[str, ...]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--meta")
        result[name] = value
    return result


def register(main: click.Group) -> None:
    @main.group()
    def keys() -> None:
        """Virtual keys: who may call Podium, on what, and how much.

        Application keys (pk-...) call the chat APIs; admin keys (pa-...) call the admin API.
        A key is shown once, when created or rotated, and stored only as a hash.
        """

    @keys.command("create")
    @CONFIG_OPTION
    @click.option("--owner", required=True, help="The team or application the key belongs to.")
    @click.option("--name", default="", help="A label for listings.")
    @click.option(
        "--scope",
        "scopes",
        multiple=True,
        help="'*' (default) or KIND:NAME with KIND model|worker|contract|route; NAME may use "
        "wildcards. Repeat for several. Kinds not named stay unrestricted.",
    )
    @click.option("--budget", type=float, help="USD the key may spend per period.")
    @click.option("--period", type=click.Choice(PERIODS), default="month", show_default=True)
    @click.option("--rpm", type=int, help="Requests per minute.")
    @click.option("--tpm", type=int, help="Tokens per minute (input + output).")
    @click.option("--expires", help="Lifetime such as 30d or 12h (default: never).")
    @click.option("--meta", multiple=True, help="NAME=VALUE metadata for routing rules.")
    @click.option("--admin", is_flag=True, help="An admin key (for /admin/...), not an app key.")
    @click.option("--json", "as_json", is_flag=True, help="Print the record and key as JSON.")
    @remote
    def create(
        url: str | None,
        admin_key: str | None,
        config_path: str | None,
        owner: str,
        name: str,
        scopes: tuple[str, ...],
        budget: float | None,
        period: str,
        rpm: int | None,
        tpm: int | None,
        expires: str | None,
        meta: tuple[str, ...],
        admin: bool,
        as_json: bool,
    ) -> None:
        """Create a key and print it (once: it cannot be shown again)."""
        config = load(config_path)
        spec = NewKey(
            owner=owner,
            name=name,
            admin=admin,
            scopes=list(scopes) or ["*"],
            metadata=_metadata(meta),
            budget_usd=budget,
            budget_period=period,  # type: ignore[arg-type]
            rpm=rpm,
            tpm=tpm,
            expires_at=time.time() + seconds(expires) if expires else None,
        )
        if url:
            created = Admin(url, admin_key).call("POST", "/admin/keys", _body(spec))
            record, key = from_public(created), created["key"]
        else:
            try:
                record, key = with_keys(config, lambda store: store.create(spec))
            except KeyProblem as error:
                raise click.ClickException(str(error)) from None
            audit_log(config).append(
                cli_actor(),
                "keys.create",
                f"key:{record.key_id}",
                {"owner": record.owner, "admin": record.is_admin, "scopes": record.scopes},
            )
        if as_json:
            click.echo(json.dumps({**record.public(), "key": key}, indent=2))
            return
        kind = "admin key" if admin else "key"
        click.echo(
            f"created {kind} {record.key_id} for {owner} ({_limits(record)}); it is shown "
            "once, keep it now:",
            err=True,
        )
        click.echo(key)

    @keys.command("ls")
    @CONFIG_OPTION
    @click.option("--all", "show_all", is_flag=True, help="Include revoked and expired keys.")
    @click.option("--json", "as_json", is_flag=True)
    @remote
    def list_keys(
        url: str | None,
        admin_key: str | None,
        config_path: str | None,
        show_all: bool,
        as_json: bool,
    ) -> None:
        """List keys (never the keys themselves)."""
        if url:
            listed = Admin(url, admin_key).call("GET", "/admin/keys")["keys"]
            records = [from_public(item) for item in listed]
        else:
            records = with_keys(load(config_path), lambda store: store.all())
        now = time.time()
        shown = [r for r in records if show_all or r.state(now) == "active"]
        if as_json:
            click.echo(json.dumps([r.public(now) for r in shown], indent=2))
            return
        if not shown:
            click.echo("no keys" + ("" if show_all else " (active); --all shows every key"))
            return
        rows: list[tuple[Any, ...]] = [
            ("ID", "KIND", "OWNER", "NAME", "SCOPES", "LIMITS", "EXPIRES", "STATE")
        ]
        for r in shown:
            rows.append(
                (
                    r.key_id,
                    "admin" if r.is_admin else "app",
                    r.owner,
                    r.name or "-",
                    ",".join(r.scopes),
                    _limits(r),
                    _when(r.expires_at),
                    r.state(now),
                )
            )
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo(
                "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
            )

    @keys.command("revoke")
    @CONFIG_OPTION
    @click.argument("key_id")
    @remote
    def revoke(
        url: str | None, admin_key: str | None, config_path: str | None, key_id: str
    ) -> None:
        """Revoke a key: refused by every gateway within its key cache TTL."""
        config = load(config_path)
        if url:
            revoked = Admin(url, admin_key).call("POST", f"/admin/keys/{_id(key_id)}/revoke")
            click.echo(f"revoked {revoked['key_id']} ({revoked['owner']})")
            return
        try:
            record = with_keys(config, lambda store: store.revoke(key_id))
        except KeyProblem as error:
            raise click.ClickException(str(error)) from None
        audit_log(config).append(cli_actor(), "keys.revoke", f"key:{record.key_id}", {})
        ttl = config.access.auth.cache_ttl
        click.echo(f"revoked {record.key_id} ({record.owner}); gateways refuse it within {ttl:g} s")

    @keys.command("rotate")
    @CONFIG_OPTION
    @click.argument("key_id")
    @click.option("--grace", help="Keep the old secret working this long (e.g. 1h). Default: 0.")
    @click.option("--json", "as_json", is_flag=True)
    @remote
    def rotate(
        url: str | None,
        admin_key: str | None,
        config_path: str | None,
        key_id: str,
        grace: str | None,
        as_json: bool,
    ) -> None:
        """Give a key a new secret; same id, owner, scopes, limits and budget."""
        grace_seconds = seconds(grace) if grace else 0.0
        if url:
            rotated = Admin(url, admin_key).call(
                "POST", f"/admin/keys/{_id(key_id)}/rotate", {"grace_seconds": grace_seconds}
            )
            if as_json:
                click.echo(json.dumps(rotated, indent=2))
                return
            click.echo(f"rotated {rotated['key_id']}; the new key (shown once):", err=True)
            click.echo(rotated["key"])
            return
        config = load(config_path)
        try:
            record, key = with_keys(
                config, lambda store: store.rotate(key_id, grace_seconds=grace_seconds)
            )
        except KeyProblem as error:
            raise click.ClickException(str(error)) from None
        audit_log(config).append(
            cli_actor(), "keys.rotate", f"key:{record.key_id}", {"grace_seconds": grace_seconds}
        )
        if as_json:
            click.echo(json.dumps({**record.public(), "key": key}, indent=2))
            return
        click.echo(f"rotated {record.key_id}; the new key (shown once):", err=True)
        click.echo(key)


def _id(key_id: str) -> str:
    from urllib.parse import quote

    return quote(key_id, safe="")


def _body(spec: NewKey) -> dict[str, Any]:
    return {
        "owner": spec.owner,
        "name": spec.name,
        "admin": spec.admin,
        "scopes": spec.scopes,
        "metadata": spec.metadata,
        "budget_usd": spec.budget_usd,
        "budget_period": spec.budget_period,
        "rpm": spec.rpm,
        "tpm": spec.tpm,
        "expires_at": spec.expires_at,
    }
