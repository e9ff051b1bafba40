"""Shared by the contract tests: a small classification contract and a gateway that serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from podium.app import Podium, create_podium
from podium.config import parse_config
from podium.testing.server import serve

TICKET: dict[str, Any] = {
    "name": "ticket",
    "version": 1,
    "description": "Route a support ticket",
    "input_schema": {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 1}, "priority": {"type": "integer"}},
        "required": ["text"],
        "additionalProperties": False,
    },
    "output_schema": {
        "type": "object",
        "properties": {
            "team": {"type": "string", "enum": ["billing", "tech"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["team", "confidence"],
        "additionalProperties": False,
    },
    "instructions": "Route this ticket to a team.\n{{ input.text }}",
    "examples": [
        {
            "input": {"text": "I was charged twice"},
            "expected": {"team": "billing", "confidence": 1},
        },
        {"input": {"text": "The app crashes"}, "expected": {"team": "tech", "confidence": 1}},
    ],
    "evaluator": {"kind": "exact", "fields": ["team"]},
}
GOOD = '{"team": "billing", "confidence": 0.8}'
# The ticket contract taking one string (a chat message is its whole input), and taking two
# required fields (a chat message must be a JSON object).
ONE_STRING: dict[str, Any] = {
    **TICKET,
    "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
}
TWO_FIELDS: dict[str, Any] = {
    **TICKET,
    "input_schema": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "priority": {"type": "integer"}},
        "required": ["text", "priority"],
    },
    "examples": [],
}


def write_contract(directory: Path, data: dict[str, Any], filename: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (filename or f"{data['name']}.yaml")
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def fake_worker(name: str, url: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "provider": "openai",
        "model": f"{name}-model",
        "base_url": url,
        "price": {"input": 1.0, "output": 2.0},
        "capabilities": ["streaming", "json"],
        "profile": {
            "vendor": "fake",
            "region": "eu",
            "cleared": ["public", "internal", "confidential", "restricted"],
        },
        "retry": {"attempts": 0},
    }
    entry.update(extra)
    return entry


def build(tmp_path: Path, workers: list[dict[str, Any]], **settings: Any) -> Podium:
    settings.setdefault("contracts", {"dir": str(tmp_path / "contracts")})
    config = parse_config({"data_dir": str(tmp_path / "data"), "workers": workers, **settings})
    return create_podium(config)


@asynccontextmanager
async def running(
    tmp_path: Path, workers: list[dict[str, Any]], **settings: Any
) -> AsyncIterator[tuple[Podium, str]]:
    podium = build(tmp_path, workers, **settings)
    async with serve(podium.app) as url:
        yield podium, url
