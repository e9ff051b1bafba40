"""``podium workers``: the pool of a running gateway, through its admin API."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    @main.group()
    def workers() -> None:
        """List, add, reprice, drain and remove workers of a running gateway."""
