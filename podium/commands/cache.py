"""``podium cache``: the response cache of a running gateway, through ``/admin/cache``."""

from __future__ import annotations

import json
from typing import Any

import click

from podium.commands.workers import Admin, gateway_options


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def stats_lines(stats: dict[str, Any]) -> list[str]:
    backend = stats["backend"]
    counters = stats["counters"]
    lookups = counters["hits"] + counters["misses"]
    lines = [f"backend      {backend['kind']}"]
    if "entries" in backend:
        lines.append(
            f"entries      {backend['entries']} of {backend['max_entries']} "
            f"({backend['bytes']} of {backend['max_total_bytes']} bytes; this process)"
        )
    if "prefix" in backend:
        lines.append(f"prefix       {backend['prefix']}cache:")
    lines += [
        f"scope        {stats['scope']}",
        f"ttl          {stats['ttl_seconds']:g}s",
        f"hits         {counters['hits']} ({_percent(counters['hits'], lookups)} of lookups)",
        f"misses       {counters['misses']}",
        f"stored       {counters['stored']}",
        f"errors       {counters['errors']}",
        f"process      {stats['process']} (counters since it started)",
    ]
    return lines


def register(main: click.Group) -> None:
    @main.group(short_help="See or empty the response cache (stats, clear).")
    @gateway_options
    @click.pass_context
    def cache(context: click.Context, url: str, admin_key: str | None) -> None:
        """The response cache of a running gateway (`podium serve`).

        With the memory backend and `podium serve --workers N`, each process has its own
        cache: these commands reach whichever process answers."""
        context.obj = Admin(url, admin_key)

    @cache.command("stats", short_help="Backend, scope, ttl and hit/miss counters.")
    @click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
    @click.pass_obj
    def stats(admin: Admin, as_json: bool) -> None:
        """Show the cache's settings and this process's counters since it started."""
        shown = admin.call("GET", "/admin/cache")
        if as_json:
            click.echo(json.dumps(shown, indent=2))
            return
        click.echo("\n".join(stats_lines(shown)))

    @cache.command("clear", short_help="Drop every cached answer.")
    @click.pass_obj
    def clear(admin: Admin) -> None:
        """Drop every cached answer: the next request of each kind goes to its worker.

        Redis: every replica's shared cache. Memory: the entries of the process that answers."""
        cleared = admin.call("DELETE", "/admin/cache")
        where = (
            "the shared Redis cache"
            if cleared.get("shared")
            else f"the memory cache of process {cleared.get('process')}"
        )
        click.echo(f"removed {cleared['removed']} entries from {where}")
