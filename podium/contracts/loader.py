"""Contracts from YAML files in the configured directory, checked as a whole when loaded.

A file holds one contract: ``NAME.yaml`` (its ``version`` field, default 1) or
``NAME@VERSION.yaml``. Several versions of a contract coexist; which one answers live calls
is decided by :meth:`ContractSet.current`. A file that cannot be used (bad YAML, an unknown
field, a schema that fails the JSON Schema meta-schema, an example that breaks its own schema)
is refused with the file and the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from podium.contracts.model import Contract
from podium.contracts.schemas import Checker, schema_problem
from podium.contracts.settings import ContractsConfig

PROMOTED_FILE = "promoted.json"


class ContractError(Exception):
    """A contract file that cannot be used; the message names the file and the reason."""


def version_key(version: str) -> tuple[Any, ...]:
    """Natural order: 2 < 10, 1.2 < 1.10."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"[._-]", version)
    )


def _describe(error: ValidationError) -> str:
    items = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        items.append(f"{where}: {message}" if where else message)
    return "; ".join(items)


def parse_contract(data: Any, source: str) -> Contract:
    """One contract from parsed YAML, with every check; ContractError names ``source``."""
    if not isinstance(data, dict):
        raise ContractError(f"{source}: a contract file holds one mapping (name, version, ...)")
    try:
        contract = Contract.model_validate(data)
    except ValidationError as error:
        raise ContractError(f"{source}: {_describe(error)}") from None
    for name in ("input_schema", "output_schema"):
        schema = getattr(contract, name)
        problem = schema_problem(schema)
        if problem is not None:
            raise ContractError(f"{source}: {name} is not a valid JSON Schema: {problem}")
        if schema.get("type") != "object":
            raise ContractError(f"{source}: {name} must describe an object (type: object)")
    properties = contract.input_schema.get("properties") or {}
    for placeholder in contract.placeholders():
        parts = placeholder.split(".")
        if len(parts) > 1 and parts[1] not in properties:
            raise ContractError(
                f"{source}: instructions use {{{{ {placeholder} }}}} but the input schema has "
                f"no property {parts[1]!r}"
            )
    inputs, outputs = Checker(contract.input_schema), Checker(contract.output_schema)
    for index, example in enumerate(contract.examples):
        problems = inputs.problems(example.input)
        if problems:
            raise ContractError(
                f"{source}: examples[{index}].input breaks the input schema: {problems[0]}"
            )
        if example.expected is not None:
            problems = outputs.problems(example.expected)
            if problems:
                raise ContractError(
                    f"{source}: examples[{index}].expected breaks the output schema: {problems[0]}"
                )
        elif contract.evaluator.needs_reference:
            raise ContractError(
                f"{source}: examples[{index}] has no expected output, which the "
                f"{contract.evaluator.kind} evaluator needs"
            )
    return contract


def load_file(path: Path) -> Contract:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ContractError(f"{path}: cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ContractError(f"{path}: not valid YAML: {error}") from None
    contract = parse_contract(data, str(path))
    stem = path.stem
    named, _, version = stem.partition("@")
    if named != contract.name:
        raise ContractError(
            f"{path}: the file name says {named!r} but the contract is named {contract.name!r}"
        )
    if version and version != contract.version:
        raise ContractError(
            f"{path}: the file name says version {version!r} but the contract "
            f"says {contract.version!r}"
        )
    return contract


@dataclass
class ContractSet:
    """Every loaded contract by name and version, and which version is current."""

    by_name: dict[str, dict[str, Contract]] = field(default_factory=dict)
    pinned: dict[str, str] = field(default_factory=dict)  # config ``current`` + promotions
    shadow: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # key (name@version) -> file

    def add(self, contract: Contract, path: Path | None = None) -> None:
        versions = self.by_name.setdefault(contract.name, {})
        if contract.version in versions:
            where = f" ({self.files.get(contract.key)} and {path})" if path else ""
            raise ContractError(f"contract {contract.key} is defined twice{where}")
        versions[contract.version] = contract
        if path is not None:
            self.files[contract.key] = path

    def names(self) -> list[str]:
        return sorted(self.by_name)

    def versions(self, name: str) -> list[str]:
        return sorted(self.by_name.get(name, {}), key=version_key)

    def current_version(self, name: str) -> str | None:
        """The promoted or pinned version; otherwise the highest version not in shadow."""
        versions = self.versions(name)
        if not versions:
            return None
        pinned = self.pinned.get(name)
        if pinned in versions:
            return pinned
        live = [v for v in versions if v != self.shadow.get(name)] or versions
        return live[-1]

    def get(self, name: str, version: str | None = None) -> Contract | None:
        versions = self.by_name.get(name)
        if not versions:
            return None
        chosen = version if version is not None else self.current_version(name)
        return versions.get(chosen) if chosen is not None else None

    def shadow_of(self, name: str) -> Contract | None:
        version = self.shadow.get(name)
        if version is None or version == self.current_version(name):
            return None
        return self.get(name, version)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_name.values())


def load_dir(directory: Path) -> ContractSet:
    if not directory.is_dir():
        raise ContractError(f"{directory}: the contracts directory does not exist")
    contracts = ContractSet()
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        contracts.add(load_file(path), path)
    return contracts


def promoted_path(data_dir: Path) -> Path:
    return data_dir / "contracts" / PROMOTED_FILE


def read_promotions(data_dir: Path) -> dict[str, str]:
    path = promoted_path(data_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ContractError(f"{path}: cannot read promotions: {error}") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def write_promotion(data_dir: Path, name: str, version: str) -> Path:
    path = promoted_path(data_dir)
    promotions = read_promotions(data_dir)
    promotions[name] = version
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(promotions, indent=2, sort_keys=True), encoding="utf-8")
    temporary.replace(path)
    return path


def load_contracts(settings: ContractsConfig, data_dir: Path) -> ContractSet:
    """The configured directory's contracts with pins, promotions and shadows applied. An
    unconfigured directory gives an empty set."""
    if settings.dir is None:
        return ContractSet()
    contracts = load_dir(settings.dir.expanduser())
    contracts.pinned = {**settings.current, **read_promotions(data_dir)}
    contracts.shadow = dict(settings.shadow.versions)
    for name, version in [*contracts.pinned.items(), *contracts.shadow.items()]:
        if name in contracts.by_name and contracts.get(name, version) is None:
            raise ContractError(
                f"contracts: {name} has no version {version!r} (versions: "
                f"{', '.join(contracts.versions(name))})"
            )
    return contracts
