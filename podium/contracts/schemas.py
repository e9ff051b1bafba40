"""JSON Schema checks with readable reasons, and the instruction template renderer.

The renderer only substitutes ``{{ input.path }}`` placeholders with values from the input
(strings as they are, anything else as JSON): no expressions, no code runs on caller data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from podium.contracts.model import PLACEHOLDER

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

# jsonschema is imported where a schema is first checked, not with this module: importing it
# can take seconds (with optional format libraries installed it compiles their grammars), a
# cost every CLI command and server process paid before it had any contract to check.

MAX_ERRORS = 5


def json_path(parts: Iterable[Any]) -> str:
    """``$.line_items[0].amount`` for a jsonschema error path."""
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema (checked against the meta-schema), or None."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = json_path(error.absolute_path)
        return f"{where}: {error.message}"
    return None


def _describe(error: ValidationError) -> str:
    message = error.message
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{json_path(error.absolute_path)}: {message}"


class Checker:
    """One compiled schema; ``problems(value)`` lists the first few failures as 'path: reason'."""

    def __init__(self, schema: dict[str, Any]) -> None:
        from jsonschema import Draft202012Validator

        self.schema = schema
        self._validator = Draft202012Validator(schema)

    def problems(self, value: Any) -> list[str]:
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        return [_describe(error) for error in errors[:MAX_ERRORS]]

    def first_path(self, value: Any) -> str | None:
        for error in self._validator.iter_errors(value):
            return json_path(error.absolute_path)
        return None


def _lookup(data: Any, dotted: str) -> Any:
    value = data
    for part in dotted.split(".")[1:]:
        if not isinstance(value, dict) or part not in value:
            return ""
        value = value[part]
    return value


def render(template: str, data: dict[str, Any]) -> str:
    def substitute(match: Any) -> str:
        value = _lookup(data, match.group(1))
        if isinstance(value, str):
            return value
        return orjson.dumps(value).decode()

    return PLACEHOLDER.sub(substitute, template)


def parse_output(text: str) -> tuple[Any, str | None]:
    """The JSON a worker answered, or (None, why not). A surrounding Markdown code fence is
    tolerated; any other text is not."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.split("\n", 1)[1] if "\n" in cleaned else ""
        cleaned = cleaned.rsplit("```", 1)[0].strip()
    if not cleaned:
        return None, "the answer was empty"
    try:
        return orjson.loads(cleaned), None
    except orjson.JSONDecodeError as error:
        preview = cleaned[:60].replace("\n", " ")
        return None, f"the answer is not JSON ({error}); it began {preview!r}"
