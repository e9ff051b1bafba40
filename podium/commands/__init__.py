"""Sub-commands of ``podium``, one module each, registered in order."""

from __future__ import annotations

import importlib

import click

COMMAND_MODULES: tuple[str, ...] = (
    "podium.commands.workers",
    "podium.commands.cache",
    "podium.commands.route",
    "podium.commands.keys",
    "podium.commands.secrets",
    "podium.commands.audit",
    "podium.commands.bom",
    "podium.commands.router",
    "podium.commands.eval_offline",
    "podium.commands.eval_live",
    "podium.commands.costs",
    "podium.commands.policy",
    "podium.commands.traces",
    "podium.commands.contracts",
)


def register_commands(main: click.Group) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(main)
