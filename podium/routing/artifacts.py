"""Versioned learned-router artifacts in ``<data_dir>/routers``.

Each training run writes ``learned-v{N}.npz`` (arrays) and ``learned-v{N}.json`` (feature
spec, policy, training data, date, metrics). A one-line ``current`` file names the version the
gateway serves; ``history.jsonl`` records every promotion so ``rollback`` can go back. Writes
are atomic (write a temporary file, then rename), so a gateway that reads ``current`` while it
changes sees either the old version or the new one.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.routing.learned import QualityCostModel

PREFIX = "learned-v"
VERSION = re.compile(r"^learned-v(\d+)\.npz$")


class ArtifactError(ValueError):
    """A version that does not exist, or nothing to roll back to."""


@dataclass(frozen=True, slots=True)
class Version:
    number: int
    path: Path

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.number}"

    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.with_suffix(".json").read_text("utf-8"))
        return data


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def parse_version(text: str) -> int:
    """``3``, ``v3`` and ``learned-v3`` all name version 3."""
    match = re.fullmatch(r"(?:learned-)?v?(\d+)", text.strip())
    if match is None:
        raise ArtifactError(f"{text!r} is not a version (try 3, v3 or learned-v3)")
    return int(match.group(1))


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def pointer(self) -> Path:
        return self.root / "current"

    @property
    def history(self) -> Path:
        return self.root / "history.jsonl"

    def versions(self) -> list[Version]:
        if not self.root.is_dir():
            return []
        found: list[Version] = []
        for path in self.root.iterdir():
            match = VERSION.match(path.name)
            if match and path.with_suffix(".json").is_file():
                found.append(Version(int(match.group(1)), path))
        return sorted(found, key=lambda v: v.number)

    def get(self, version: int | str) -> Version:
        number = version if isinstance(version, int) else parse_version(version)
        for found in self.versions():
            if found.number == number:
                return found
        raise ArtifactError(f"no learned-router version {number} in {self.root.name}/")

    def save(self, model: QualityCostModel) -> Version:
        """Write ``model`` as the next version (not promoted)."""
        existing = self.versions()
        number = existing[-1].number + 1 if existing else 1
        model.metadata.setdefault("created_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        model.metadata["version"] = number
        path = self.root / f"{PREFIX}{number}.npz"
        model.save(path)
        return Version(number, path)

    def rewrite(self, version: Version, model: QualityCostModel) -> None:
        """Replace a version's files in place (calibration writes its policy this way)."""
        model.save(version.path)

    def current(self) -> Version | None:
        try:
            text = self.pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if not text:
            return None
        try:
            return self.get(text)
        except ArtifactError:
            return None

    def promote(self, version: int | str, *, note: str = "promote") -> Version:
        chosen = self.get(version)
        previous = self.current()
        _atomic_write(self.pointer, chosen.name + "\n")
        entry = {
            "at": time.time(),
            "action": note,
            "version": chosen.number,
            "previous": previous.number if previous else None,
        }
        with self.history.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
        return chosen

    def promotions(self) -> list[dict[str, Any]]:
        if not self.history.is_file():
            return []
        lines = self.history.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _stack(self) -> list[int]:
        """Promotions as a stack: ``promote`` pushes, ``rollback`` pops."""
        stack: list[int] = []
        for entry in self.promotions():
            if entry.get("action") == "rollback":
                if stack:
                    stack.pop()
            else:
                stack.append(int(entry["version"]))
        return stack

    def rollback(self) -> Version:
        """Serve the version that was current before the last promotion still in force."""
        if self.current() is None:
            raise ArtifactError("no version is current: nothing to roll back")
        stack = self._stack()
        if len(stack) < 2:
            raise ArtifactError("there is no earlier promotion to go back to")
        target = self.get(stack[-2])
        previous = self.current()
        _atomic_write(self.pointer, target.name + "\n")
        entry = {
            "at": time.time(),
            "action": "rollback",
            "version": target.number,
            "previous": previous.number if previous else None,
        }
        with self.history.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
        return target

    def load(self, version: Version) -> QualityCostModel:
        return QualityCostModel.load(version.path)
