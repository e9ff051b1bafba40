"""The worker pool as a CycloneDX 1.6 ML-BOM: which models answer, from whom, pinned how, and
how each vendor handles the data sent to it.

Each worker is a ``machine-learning-model`` component. Local models carry the sha256 they are
pinned to (the same pin that refuses a tampered file at load time) and their licence; remote
models carry their vendor as supplier and the host requests go to. The data-handling profile
(region, retention, training on customer data, cleared data classes) and prices are properties
in the ``podium:`` namespace. Podium and the libraries it runs on follow as ``library``
components with package URLs, so one document answers "what is in this gateway".
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

from podium.config import PodiumConfig, WorkerConfig
from podium.modelfiles import catalogue

SPEC_VERSION = "1.6"
RUNTIME_PACKAGES = ("aiohttp", "orjson", "pydantic", "uvicorn", "xllamacpp", "cryptography")


def _property(name: str, value: object) -> dict[str, str]:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    return {"name": f"podium:{name}", "value": text}


def _pinned(worker: WorkerConfig) -> tuple[str | None, str | None, str | None, str | None]:
    """(sha256, version, licence, file name) of a local worker's model, when pinned."""
    options = worker.options
    name = options.get("model")
    if isinstance(name, str):
        model = catalogue().get(name)
        if model is not None:
            match = re.search(r"(Q\d\w*)$", model.title)
            return model.sha256, match.group(1) if match else None, model.license, model.title
    sha = options.get("sha256")
    path = options.get("path")
    if isinstance(sha, str):
        return sha, None, None, str(path).rsplit("/", 1)[-1] if path else None
    return None, None, None, None


def model_component(worker: WorkerConfig) -> dict[str, Any]:
    profile = worker.profile
    sha256, version, licence, title = _pinned(worker)
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": f"worker:{worker.name}",
        "name": worker.model,
        "supplier": {"name": profile.vendor},
        "description": f"Podium worker {worker.name!r} ({worker.provider} provider)"
        + (f": {title}" if title else ""),
    }
    if version:
        component["version"] = version
    if sha256:
        component["hashes"] = [{"alg": "SHA-256", "content": sha256}]
    if licence:
        component["licenses"] = [{"license": {"name": licence}}]
    properties = [
        _property("worker", worker.name),
        _property("provider", worker.provider),
        _property("pinned", sha256 is not None),
    ]
    if worker.base_url:
        properties.append(_property("egress_host", urlsplit(worker.base_url).netloc))
    if worker.aliases:
        properties.append(_property("aliases", worker.aliases))
    properties += [
        _property("price_input_per_mtok_usd", worker.price.input),
        _property("price_output_per_mtok_usd", worker.price.output),
        _property("context_window", worker.context_window),
        _property("capabilities", list(worker.capabilities)),
    ]
    handling = [
        _property("data.vendor", profile.vendor),
        _property("data.region", profile.region),
        _property(
            "data.retention_days",
            "unknown" if profile.retention_days is None else profile.retention_days,
        ),
        _property("data.trains_on_data", profile.trains_on_data),
        _property("data.cleared_classes", profile.cleared),
    ]
    component["properties"] = properties + handling
    embeds = worker.role == "embed"
    component["modelCard"] = {
        "modelParameters": {"task": "feature-extraction" if embeds else "text-generation"},
        "considerations": {
            "useCases": [
                "text embeddings through the Podium gateway"
                if embeds
                else "chat completion through the Podium gateway"
            ],
            "technicalLimitations": [f"context window {worker.context_window} tokens"],
        },
        "properties": handling,
    }
    return component


def _library(name: str) -> dict[str, Any] | None:
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
    return {
        "type": "library",
        "bom-ref": f"pkg:pypi/{name.lower()}@{version}",
        "name": name,
        "version": version,
        "purl": f"pkg:pypi/{name.lower()}@{version}",
    }


def build_bom(
    config: PodiumConfig,
    *,
    libraries: bool = True,
    serial: uuid.UUID | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    podium = _library("podium") or {"type": "application", "name": "podium"}
    podium = {**podium, "type": "application"}
    components = [model_component(worker) for worker in config.workers]
    if libraries:
        components += [c for c in map(_library, RUNTIME_PACKAGES) if c is not None]
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{serial or uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{**podium, "bom-ref": "tool:podium"}]},
            "component": {**podium, "bom-ref": "podium-gateway", "name": "podium gateway"},
            "properties": [_property("workers", len(config.workers))],
        },
        "components": components,
        "dependencies": [
            {
                "ref": "podium-gateway",
                "dependsOn": [c["bom-ref"] for c in components],
            }
        ],
    }
