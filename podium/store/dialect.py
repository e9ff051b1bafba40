"""The few differences between the SQL that modules write (SQLite's ``?`` placeholders) and
what PostgreSQL's driver takes, handled in one place so every module keeps one statement.

- Placeholders: ``?`` becomes ``%s`` (psycopg's), except inside quoted literals and
  identifiers; a literal ``%`` becomes ``%%`` so psycopg does not read it as a placeholder.
  The trace writer's statements take PostgreSQL's own ``$1`` form instead (``to_numbered``).
- Migrations see ``db.dialect`` (``"sqlite"`` or ``"postgresql"``) for the rare statement whose
  spelling differs; every migration so far is shared SQL and does not look at it.
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["sqlite", "postgresql"]


def to_pyformat(sql: str) -> str:
    """``sql`` with ``?`` placeholders rewritten for psycopg (``%s``), quotes respected."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
            out.append("%%" if char == "%" else char)
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


def to_numbered(sql: str) -> str:
    """``sql`` with ``?`` placeholders rewritten as PostgreSQL's own (``$1``, ``$2``, ...),
    quotes respected, for psycopg's raw cursor: it sends the text as it is, where the ``%s``
    form is parsed in Python on every call once a statement is too long for psycopg's cache
    (a multi-row upsert is)."""
    out: list[str] = []
    quote: str | None = None
    number = 0
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
            out.append(char)
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            number += 1
            out.append(f"${number}")
        else:
            out.append(char)
    return "".join(out)


class StatementRecorder:
    """An executor for migrations that only collects their statements, so they can be replayed
    on an async connection (migration steps are plain functions calling ``execute(sql)``)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect: Dialect = dialect
        self.statements: list[str] = []

    def execute(self, sql: str) -> object:
        self.statements.append(sql)
        return None
