"""``podium traces ls|show|export``: read the configured trace store directly (no running
gateway needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import IO, Any, Protocol, TypeVar, cast

import click
import orjson

from podium.config import ConfigError, PodiumConfig, load_config
from podium.errors import PodiumError
from podium.observe.feedback import Rows, signals_for
from podium.observe.stats import parse_time
from podium.store.factory import create_store, sqlite_path
from podium.store.traces import TraceRecord, TraceStore

T = TypeVar("T")
EXPORT_PAGE = 1000


class Store(TraceStore, Rows, Protocol):
    """A trace store that also runs statements (SQLite and PostgreSQL both do)."""


def _with_store(config: PodiumConfig, work: Callable[[Store], Awaitable[T]]) -> T:
    if config.store.kind != "postgres":
        path = sqlite_path(config.store, config.resolved_data_dir())
        if not path.is_file():
            raise click.ClickException(f"no trace store at {path} (has this gateway served yet?)")

    async def run() -> T:
        store = cast(Store, create_store(config.store, config.resolved_data_dir()))
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _time(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_time(text, param=name)
    except PodiumError as error:
        raise click.BadParameter(error.message, param_hint=f"--{name}") from None


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _money(value: float) -> str:
    return f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """A plain-text table: columns sized to their content, numbers aligned right."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def _load(ctx: click.Context) -> PodiumConfig:
    try:
        return load_config(ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def register(main: click.Group) -> None:
    @main.group()
    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="podium.yaml whose store to read (default: ./podium.yaml if present).",
    )
    @click.pass_context
    def traces(ctx: click.Context, config_path: str | None) -> None:
        """List, show and export recorded traces (reads the store directly)."""
        ctx.obj = {"config": config_path}

    @traces.command("ls")
    @click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
    @click.option("--since", help="Only traces after this (e.g. 24h, 7d, 2026-11-28).")
    @click.option("--caller", help="Only this caller (key id).")
    @click.option("--worker", help="Only traces answered by this worker.")
    @click.option("--contract", help="Only this contract.")
    @click.pass_context
    def ls(
        ctx: click.Context,
        limit: int,
        since: str | None,
        caller: str | None,
        worker: str | None,
        contract: str | None,
    ) -> None:
        """The newest traces as a table."""
        records = _with_store(
            _load(ctx),
            lambda store: store.list_traces(
                limit=limit,
                since=_time(since, "since"),
                caller=caller,
                worker=worker,
                contract=contract,
            ),
        )
        if not records:
            click.echo("no traces")
            return
        rows = [
            [
                r.trace_id,
                _when(r.created_at),
                r.caller,
                r.route,
                r.worker or "-",
                r.status if r.status == "ok" else f"{r.status} {r.http_status}",
                f"{r.input_tokens}/{r.output_tokens}",
                _money(r.cost_usd),
                f"{r.latency_ms:.0f} ms",
            ]
            for r in records
        ]
        headers = ["trace", "time", "caller", "route", "worker", "status", "tokens", "cost"]
        click.echo(table([*headers, "latency"], rows, {6, 7, 8}))

    @traces.command("show")
    @click.argument("trace_id")
    @click.pass_context
    def show(ctx: click.Context, trace_id: str) -> None:
        """One trace: the decision, every workflow step and its quality signals."""

        async def read(store: Store) -> tuple[TraceRecord | None, list[dict[str, Any]]]:
            return await store.get_trace(trace_id), await signals_for(store, trace_id)

        record, signals = _with_store(_load(ctx), read)
        if record is None:
            raise click.ClickException(f"no trace {trace_id!r}")
        click.echo(describe(record, signals))

    @traces.command("export")
    @click.option("--since", help="Only traces after this (e.g. 24h, 7d, 2026-11-28).")
    @click.option("--until", help="Only traces before this.")
    @click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl")
    @click.option("--output", "-o", type=click.Path(dir_okay=False), help="File (default: stdout).")
    @click.pass_context
    def export(
        ctx: click.Context, since: str | None, until: str | None, fmt: str, output: str | None
    ) -> None:
        """Every trace in the range, oldest first, one JSON object a line."""
        start = _time(since, "since") or 0.0
        end = _time(until, "until") or time.time() + 1

        async def write(store: Store) -> int:
            # A CLI with nothing else on its loop: blocking file writes are fine here.
            stream: IO[bytes] = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115, ASYNC230
            count = 0
            try:
                async for record in _pages(store, start, end):
                    stream.write(orjson.dumps(dataclasses.asdict(record)) + b"\n")
                    count += 1
            finally:
                if output:
                    stream.close()
                else:
                    stream.flush()
            return count

        count = _with_store(_load(ctx), write)
        if output:
            click.echo(f"exported {count} traces to {output}", err=True)


async def _pages(store: Store, start: float, end: float) -> Any:
    """Oldest first, a page at a time, so an export of millions never holds them all."""
    cursor_time, cursor_id = start, ""
    columns = "trace_id"
    while True:
        rows = await store.execute(
            f"SELECT {columns} FROM traces WHERE created_at < ? AND "
            "(created_at > ? OR (created_at = ? AND trace_id > ?)) "
            "ORDER BY created_at, trace_id LIMIT ?",
            (end, cursor_time, cursor_time, cursor_id, EXPORT_PAGE),
        )
        if not rows:
            return
        for (trace_id,) in rows:
            record = await store.get_trace(trace_id)
            if record is not None:
                cursor_time, cursor_id = record.created_at, record.trace_id
                yield record


def _steps(record: TraceRecord) -> Iterator[list[str]]:
    for step in record.steps:
        yield [
            str(int(step.get("step") or 0) + 1),
            str(step.get("role") or ""),
            str(step.get("worker") or ""),
            str(step.get("status") or "") + (f": {step['error']}" if step.get("error") else ""),
            str(step.get("input_tokens") or 0),
            str(step.get("output_tokens") or 0),
            _money(float(step.get("cost_usd") or 0.0)),
            f"{float(step.get('latency_ms') or 0.0):.0f} ms",
        ]


def describe(record: TraceRecord, signals: list[dict[str, Any]]) -> str:
    status = f"{record.status} ({record.http_status})"
    if record.error:
        status += f": {record.error}"
    latency = f"{record.latency_ms:.0f} ms"
    if record.ttft_ms is not None:
        latency += f" (first token {record.ttft_ms:.0f} ms)"
    facts = [
        ("trace", record.trace_id),
        ("time", _when(record.created_at)),
        ("caller", f"{record.caller} (owner {record.owner})"),
        ("model asked", record.requested_model),
        ("route", record.route),
        ("router / rule", f"{record.router or '-'} / {record.rule or '-'}"),
        ("reason", record.reason or "-"),
        ("worker", record.worker or "-"),
        ("status", status),
        ("data class", record.data_class),
        ("contract", record.contract or "-"),
        ("policy actions", ", ".join(record.policy_actions) or "-"),
        ("tokens", f"{record.input_tokens} in, {record.output_tokens} out"),
        ("cost", _money(record.cost_usd)),
        ("latency", latency),
    ]
    width = max(len(name) for name, _ in facts)
    out = [f"{name.ljust(width)}  {value}" for name, value in facts]
    out += ["", "Decision: candidates"]
    candidates = [
        [
            str(c.get("worker")) + (" *" if c.get("worker") == record.worker else ""),
            f"{float(c.get('score') or 0):.3f}",
            "-" if c.get("quality") is None else f"{float(c['quality']):.2f}",
            "-" if c.get("cost_usd") is None else _money(float(c["cost_usd"])),
        ]
        for c in record.candidates
    ]
    out.append(
        table(["worker", "score", "quality", "cost"], candidates, {1, 2, 3}) if candidates else "-"
    )
    out += ["", "Workflow steps"]
    headers = ["step", "role", "worker", "outcome", "in", "out", "cost", "latency"]
    out.append(table(headers, list(_steps(record)), {0, 4, 5, 6, 7}))
    out += ["", "Quality signals"]
    if signals:
        rows = [
            [
                str(s["source"]),
                str(s["name"]),
                str(s["label"] if s["label"] is not None else s["value"]),
                "-" if s["score"] is None else f"{s['score']:.2f}",
                str(s["comment"] or ""),
            ]
            for s in signals
        ]
        out.append(table(["source", "name", "value", "score", "comment"], rows, {3}))
    else:
        out.append("none")
    if record.prompt or record.answer:
        out += ["", "Prompt", record.prompt or "", "", "Answer", record.answer or ""]
    return "\n".join(out)
