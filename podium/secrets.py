"""Where provider credentials come from, and how they are kept out of everything a client sees."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Protocol

REDACTED = "[redacted]"


class SecretSource(Protocol):
    def get(self, name: str) -> str | None:
        """The secret stored under ``name``, or None when there is none."""


class EnvironmentSecrets:
    """Secrets from environment variables, read when asked (so a rotated variable is seen)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ

    def get(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value or None


class ChainedSecrets:
    """The first source that has a secret wins: environment first, then an encrypted store."""

    def __init__(self, sources: Iterable[SecretSource]) -> None:
        self._sources = list(sources)

    def get(self, name: str) -> str | None:
        for source in self._sources:
            value = source.get(name)
            if value is not None:
                return value
        return None


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (and any 8+ character piece of one) replaced by a marker."""
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, REDACTED)
        if len(secret) >= 16:
            # Vendors echo keys partly ("sk-abc...wxyz"); drop recognisable head and tail too.
            for piece in (secret[:8], secret[-8:]):
                text = text.replace(piece, REDACTED)
    return text
