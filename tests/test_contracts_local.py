"""The shipped contracts on the embedded SmolLM2-135M worker: grammar-constrained decoding makes
every output schema-valid; whether it is also correct is what the evaluator reports."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from jsonschema import Draft202012Validator

from podium.app import create_podium
from podium.config import embedded_workers, parse_config
from podium.contracts.loader import load_dir
from podium.testing.server import serve

pytestmark = pytest.mark.slow
CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"


async def test_the_shipped_contracts_return_schema_valid_output(tmp_path: Path) -> None:
    shipped = load_dir(CONTRACTS)
    # The embedded SmolLM2 worker, with room for a busy shared CPU: a non-streamed answer's
    # head only comes when it is complete.
    local = embedded_workers()[0].model_dump(mode="json")
    local.update(timeouts={"first_byte": 900, "total": 900}, retry={"attempts": 0})
    config = parse_config(
        {
            "data_dir": str(tmp_path / "data"),
            "workers": [local],
            "contracts": {"dir": str(CONTRACTS)},
        }
    )
    podium = create_podium(config)
    async with serve(podium.app) as url, httpx.AsyncClient(timeout=600) as client:
        for name in ("email-route", "invoice-extract"):
            contract = shipped.get(name)
            assert contract is not None
            reply = await client.post(
                f"{url}/v1/contracts/{name}", json={"input": contract.examples[0].input}
            )
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["worker"] == "smollm2-135m" and body["cost_usd"] == 0
            assert not list(
                Draft202012Validator(contract.output_schema).iter_errors(body["output"])
            )
        async with openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600
        ) as sdk:
            completion = await sdk.chat.completions.create(
                model="contract/email-route",
                messages=[{"role": "user", "content": "My parcel never arrived."}],
            )
            routed = json.loads(completion.choices[0].message.content or "")
            assert routed["department"] in {
                "billing",
                "technical_support",
                "sales",
                "shipping",
                "account",
                "other",
            }
