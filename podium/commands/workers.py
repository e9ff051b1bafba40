"""``podium workers``: the pool of a running gateway, through its admin API, and an offline check
of a ``podium.yaml``.

Talks to the gateway with the standard library's HTTP client: these commands must work from a
bare install, and they send one small request each.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import click
import yaml

if TYPE_CHECKING:
    from podium.config import PodiumConfig

DEFAULT_URL = "http://127.0.0.1:8400"
F = TypeVar("F", bound=Callable[..., Any])


class Admin:
    """A client of ``/admin/workers`` on one gateway."""

    def __init__(self, url: str, key: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("accept", "application/json")
        if data is not None:
            request.add_header("content-type", "application/json")
        if self.key:
            request.add_header("authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise click.ClickException(_http_problem(error)) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise click.ClickException(
                f"cannot reach Podium at {self.url} ({reason}). Is it running? Start it with "
                "`podium serve`, or point at it with --url."
            ) from None


def gateway_options(command: F) -> F:
    """``--url`` and ``--admin-key``: how a command group reaches a running gateway's admin
    API (the groups then build an :class:`Admin` from them)."""
    command = click.option(
        "--admin-key",
        envvar="PODIUM_ADMIN_KEY",
        help="Admin key ($PODIUM_ADMIN_KEY); not needed on loopback when the gateway has none.",
    )(command)
    return click.option(
        "--url",
        default=DEFAULT_URL,
        show_default=True,
        envvar="PODIUM_URL",
        help="The running gateway ($PODIUM_URL).",
    )(command)


def _http_problem(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(error.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = error.reason
    hint = ""
    if error.code == 401:
        hint = " (give the admin key with --admin-key or $PODIUM_ADMIN_KEY)"
    elif error.code == 403:
        hint = " (without an admin key the API answers loopback clients only)"
    return f"{error.code}: {detail}{hint}"


def _path(name: str, *rest: str) -> str:
    return "/admin/workers/" + "/".join([quote(name, safe=""), *rest])


def _assignments(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``price.input=2.5 capabilities=[tools,streaming]`` as a nested mapping (YAML values)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not FIELD=VALUE", param_hint="FIELD=VALUE")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        target = result
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise click.BadParameter(f"{key!r} mixes a value and a section")
        target[parts[-1]] = value
    return result


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _price(value: Any) -> str:
    return "-" if value is None else f"{float(value):g}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _caps(capabilities: Sequence[str], role: str) -> str:
    """The capabilities, led by the role when the worker does not answer chat."""
    shown = [f"{role} only"] if role != "answer" else []
    return ",".join([*shown, *capabilities])


def worker_rows(workers: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for worker in workers:
        health = worker.get("health") or {}
        state = "draining" if health.get("draining") else "serving"
        if health.get("resting_seconds"):  # an upstream 429 asked for a pause
            state += f", resting {health['resting_seconds']:g}s"
        load = str(health.get("in_flight", "-"))
        if health.get("slots"):
            load += f"/{health['slots']}"
            if health.get("adaptive"):
                load += " (learned)"
        price = worker.get("price") or {}
        rows.append(
            [
                worker["name"],
                worker["provider"],
                worker["model"],
                _price(price.get("input")),
                _price(price.get("output")),
                str(worker.get("context_window", "")),
                _caps(worker.get("capabilities") or [], str(worker.get("role") or "answer")),
                state,
                str(health.get("circuit", "-")),
                load,
            ]
        )
    return rows


HEADER = ["NAME", "PROVIDER", "MODEL", "$IN/1M", "$OUT/1M", "CONTEXT", "CAPS", "STATE", "CIRCUIT"]


def register(main: click.Group) -> None:
    @main.group(short_help="Manage the worker pool (ls, add, set, drain, rm).")
    @gateway_options
    @click.pass_context
    def workers(context: click.Context, url: str, admin_key: str | None) -> None:
        """Manage the worker pool of a running gateway.

        The gateway must be running (`podium serve`); `check` works offline."""
        context.obj = Admin(url, admin_key)

    @workers.command("ls", short_help="List workers with price and health.")
    @click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
    @click.pass_obj
    def ls(admin: Admin, as_json: bool) -> None:
        """Show the pool: prices, capabilities, state, circuit and load."""
        listed = admin.call("GET", "/admin/workers")["workers"]
        if as_json:
            click.echo(json.dumps(listed, indent=2))
            return
        if not listed:
            click.echo("no workers")
            return
        click.echo(table(worker_rows(listed), [*HEADER, "IN-FLIGHT"]))

    @workers.command("add", short_help="Add a worker.")
    @click.argument("name")
    @click.argument("fields", nargs=-1, metavar="[FIELD=VALUE]...")
    @click.option("--provider", help="openai, anthropic, gemini, local, ...")
    @click.option("--model", help="The model name the upstream knows.")
    @click.option("--base-url", help="The upstream's base URL.")
    @click.option("--api-key-env", help="Environment variable (on the gateway) holding the key.")
    @click.option("--input-price", type=float, help="USD per 1M input tokens.")
    @click.option("--output-price", type=float, help="USD per 1M output tokens.")
    @click.option(
        "--from-file",
        type=click.Path(exists=True, dir_okay=False),
        help="A YAML/JSON worker entry to start from.",
    )
    @click.pass_obj
    def add(
        admin: Admin,
        name: str,
        fields: tuple[str, ...],
        provider: str | None,
        model: str | None,
        base_url: str | None,
        api_key_env: str | None,
        input_price: float | None,
        output_price: float | None,
        from_file: str | None,
    ) -> None:
        """Add a worker. Other fields go as FIELD=VALUE, e.g. context_window=32768
        capabilities=[tools,streaming] profile.region=eu."""
        body: dict[str, Any] = {}
        if from_file:
            loaded = yaml.safe_load(Path(from_file).read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise click.ClickException(f"{from_file}: expected one worker entry (a mapping)")
            body.update(loaded)
        body["name"] = name
        for key, value in (
            ("provider", provider),
            ("model", model),
            ("base_url", base_url),
            ("api_key_env", api_key_env),
        ):
            if value is not None:
                body[key] = value
        price = {
            k: v for k, v in (("input", input_price), ("output", output_price)) if v is not None
        }
        if price:
            body["price"] = {**(body.get("price") or {}), **price}
        _merge(body, _assignments(fields))
        added = admin.call("POST", "/admin/workers", body)
        click.echo(f"added {added['name']} ({added['provider']} {added['model']})")

    @workers.command("set", short_help="Reprice or change a worker.")
    @click.argument("name")
    @click.argument("fields", nargs=-1, metavar="[FIELD=VALUE]...")
    @click.option("--input-price", type=float, help="USD per 1M input tokens.")
    @click.option("--output-price", type=float, help="USD per 1M output tokens.")
    @click.pass_obj
    def set_(
        admin: Admin,
        name: str,
        fields: tuple[str, ...],
        input_price: float | None,
        output_price: float | None,
    ) -> None:
        """Change a worker: reprice it, or set FIELD=VALUE (e.g. price.output=10)."""
        changes = _assignments(fields)
        price = {
            k: v for k, v in (("input", input_price), ("output", output_price)) if v is not None
        }
        if price:
            changes["price"] = {**(changes.get("price") or {}), **price}
        if not changes:
            raise click.UsageError(
                "nothing to change: give --input-price, --output-price or FIELD=VALUE"
            )
        updated = admin.call("PATCH", _path(name), changes)
        price_now = updated.get("price") or {}
        click.echo(
            f"updated {updated['name']}: ${_price(price_now.get('input'))} in, "
            f"${_price(price_now.get('output'))} out per 1M tokens"
        )

    @workers.command("drain", short_help="Stop new requests to a worker.")
    @click.argument("name")
    @click.pass_obj
    def drain(admin: Admin, name: str) -> None:
        """Stop sending new requests to a worker (running ones finish)."""
        admin.call("POST", _path(name, "drain"))
        click.echo(f"draining {name}")

    @workers.command("undrain", short_help="Resume a drained worker.")
    @click.argument("name")
    @click.pass_obj
    def undrain(admin: Admin, name: str) -> None:
        """Send new requests to a drained worker again (and end an upstream 429's pause)."""
        admin.call("POST", _path(name, "undrain"))
        click.echo(f"serving {name}")

    @workers.command("rm", short_help="Remove a worker.")
    @click.argument("name")
    @click.pass_obj
    def rm(admin: Admin, name: str) -> None:
        """Remove a worker (its running requests finish first)."""
        removed = admin.call("DELETE", _path(name))
        waiting = removed.get("in_flight") or 0
        click.echo(f"removed {name}" + (f" ({waiting} requests finishing)" if waiting else ""))

    @workers.command("check", short_help="Validate a podium.yaml offline.")
    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="podium.yaml to check (default: ./podium.yaml if present, else embedded).",
    )
    def check(config_path: str | None) -> None:
        """Validate a podium.yaml offline and list its pool (no gateway needed)."""
        problems, warnings, rows = check_config(config_path)
        if rows:
            click.echo(table(rows, [*HEADER[:7], "KEY"]))
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        if problems:
            raise click.ClickException("\n".join(problems))
        click.echo(f"ok: {len(rows)} worker(s)", err=True)


def provider_problems(config: PodiumConfig, source: str = "configuration") -> list[str]:
    """What each worker's provider finds wrong with its settings (unknown provider, bad or
    missing options such as a local model without its sha256 pin), without starting anything."""
    return provider_findings(config, source)[0]


def provider_findings(
    config: PodiumConfig, source: str = "configuration"
) -> tuple[list[str], list[str]]:
    """The problems of :func:`provider_problems`, and the warnings providers give
    (:class:`podium.providers.base.CautionedProvider`)."""
    from podium.plugins import load_plugins
    from podium.providers.base import CautionedProvider, ProviderContext, ProviderRegistry
    from podium.providers.egress import Egress
    from podium.secrets import EnvironmentSecrets

    registry = ProviderRegistry()
    for module in load_plugins():
        hook = getattr(module, "register_providers", None)
        if hook is not None:
            hook(registry)
    http = Egress()  # sessions are created on first use only: nothing opens here
    problems: list[str] = []
    warnings: list[str] = []
    for index, worker in enumerate(config.workers):
        try:
            provider = registry.create(
                ProviderContext(
                    worker=worker,
                    http=http,
                    secrets=EnvironmentSecrets(),
                    data_dir=config.resolved_data_dir(),
                )
            )
        except Exception as error:  # every provider reports its own option errors
            reason = _short(error).removeprefix(f"worker {worker.name!r}: ")
            problems.append(f"{source}: workers.{index} ({worker.name}): {reason}")
            continue
        if isinstance(provider, CautionedProvider):
            warnings.extend(provider.warnings())
    return problems, warnings


def build_problem(config: PodiumConfig) -> str | None:
    """What building the app finds wrong (routing rules and routers, contracts and their
    hints, policy references), or None. Builds it once (a quarter of a second; nothing
    starts)."""
    from podium.app import create_podium
    from podium.config import ConfigError

    try:
        create_podium(config, start_workers=False)
    except ConfigError as error:
        return str(error)
    return None


def check_config(config_path: str | None) -> tuple[list[str], list[str], list[list[str]]]:
    """Problems (fatal), warnings and table rows for the pool a config file describes."""
    from podium.config import ConfigError, load_config
    from podium.modelfiles import ModelFileError, catalogue, chunk_paths

    try:
        config = load_config(config_path)
    except ConfigError as error:
        return [str(error)], [], []
    problems, warnings = provider_findings(config, config_path or "configuration")
    if not problems and (problem := build_problem(config)) is not None:
        problems.append(problem)
    rows: list[list[str]] = []
    for worker in config.workers:
        key = "-"
        if worker.api_key_env:
            key = f"${worker.api_key_env}"
            if os.environ.get(worker.api_key_env) is None:
                key += " (unset)"
                warnings.append(
                    f"worker {worker.name!r}: ${worker.api_key_env} is not set in this shell"
                )
        model_name = worker.options.get("model") if worker.provider == "local" else None
        pinned = catalogue().get(model_name) if isinstance(model_name, str) else None
        if pinned is not None:
            try:
                chunk_paths(pinned)
            except ModelFileError as error:
                warnings.append(f"worker {worker.name!r}: {error}")
        rows.append(
            [
                worker.name,
                worker.provider,
                worker.model,
                _price(worker.price.input),
                _price(worker.price.output),
                str(worker.context_window),
                _caps(worker.capabilities, worker.role),
                key,
            ]
        )
    return problems, warnings, rows


def _short(error: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return "; ".join(
            f"options.{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
    return str(error)
