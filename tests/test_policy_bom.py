"""``podium bom``: the pool as a CycloneDX 1.6 ML-BOM that validates against the spec's schema."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from podium.cli import main
from podium.config import parse_config
from podium.modelfiles import catalogue
from podium.policy.bom import build_bom


def remote_and_local() -> Any:
    return parse_config(
        {
            "workers": [
                {
                    "name": "gpt-mini",
                    "provider": "openai",
                    "model": "gpt-4o-mini-2024-07-18",
                    "base_url": "https://api.example.com/v1",
                    "api_key_env": "OPENAI_API_KEY",
                    "price": {"input": 0.15, "output": 0.6},
                    "profile": {
                        "vendor": "openai",
                        "region": "us",
                        "retention_days": 30,
                        "trains_on_data": False,
                        "cleared": ["public", "internal"],
                    },
                },
                {
                    "name": "local",
                    "provider": "local",
                    "model": "SmolLM2-135M-Instruct",
                    "options": {"model": "smollm2-135m"},
                    "profile": {"vendor": "podium-local", "region": "on-premises"},
                },
            ]
        }
    )


def test_bom_validates_against_cyclonedx_1_6() -> None:
    document = build_bom(remote_and_local())
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    assert errors is None, errors
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    assert uuid.UUID(document["serialNumber"].removeprefix("urn:uuid:"))
    assert document["version"] == 1 and document["metadata"]["timestamp"].endswith("Z")


def test_models_carry_pins_vendors_and_data_handling() -> None:
    document = build_bom(remote_and_local(), libraries=False)
    models = {c["bom-ref"]: c for c in document["components"]}
    assert set(models) == {"worker:gpt-mini", "worker:local"}
    local = models["worker:local"]
    assert local["type"] == "machine-learning-model"
    assert local["hashes"] == [{"alg": "SHA-256", "content": catalogue()["smollm2-135m"].sha256}]
    assert local["licenses"][0]["license"]["name"] == "Apache-2.0"
    remote = models["worker:gpt-mini"]
    assert remote["name"] == "gpt-4o-mini-2024-07-18"
    assert remote["supplier"]["name"] == "openai"
    assert "hashes" not in remote  # nothing to pin for a remote model
    properties = {p["name"]: p["value"] for p in remote["properties"]}
    assert properties["podium:egress_host"] == "api.example.com"
    assert properties["podium:data.retention_days"] == "30"
    assert properties["podium:data.trains_on_data"] == "false"
    assert properties["podium:data.cleared_classes"] == "public,internal"
    assert properties["podium:pinned"] == "false"
    assert "OPENAI_API_KEY" not in json.dumps(document)  # not even the variable's name
    assert remote["modelCard"]["modelParameters"]["task"] == "text-generation"


def test_bom_command_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "bom.json"
    result = CliRunner().invoke(
        main, ["bom", "--out", str(out)], env={"PODIUM_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert "2 model(s), CycloneDX 1.6" in result.output  # the embedded chat and embedding models
    models = json.loads(out.read_text())["components"]
    tasks = {
        m["name"]: m["modelCard"]["modelParameters"]["task"] for m in models if "modelCard" in m
    }
    assert tasks == {
        "SmolLM2-135M-Instruct": "text-generation",
        "minilm-l6-static256": "feature-extraction",
    }
    document = json.loads(out.read_text())
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out.read_text()) is None
    kinds = [c["type"] for c in document["components"]]
    assert kinds.count("machine-learning-model") == 2  # SmolLM2 and the static MiniLM
    assert any(c.get("purl", "").startswith("pkg:pypi/aiohttp@") for c in document["components"])
