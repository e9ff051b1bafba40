"""Shadow scoring of a candidate version against what was served, workflows included."""

from __future__ import annotations

import time
from pathlib import Path

from podium.config import parse_config
from podium.routing.artifacts import ArtifactStore
from podium.routing.learned import Policy
from podium.routing.shadow import shadow_report
from podium.store.sqlite import SQLiteStore
from tests.learned_helpers import hard_prompt, measured_cascade, served_trace


async def test_a_workflow_is_a_choice_of_its_own_on_both_sides(tmp_path: Path) -> None:
    model = measured_cascade()
    model.policy = Policy("tradeoff", lam=30)
    artifact = ArtifactStore(tmp_path / "routers").save(model).path
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "workers": [
                {"name": n, "provider": "openai", "model": n, "base_url": "http://127.0.0.1:9"}
                for n in ("cheap", "strong", "middling")
            ],
        }
    )
    store = SQLiteStore(tmp_path / "podium.db")
    await store.open()
    await store.write_traces(
        [
            served_trace(hard_prompt(1), "strong", time.time()),
            served_trace(hard_prompt(3), "strong", time.time()),
            # the cascade answered this one: its last worker, but the workflow was the choice
            served_trace(hard_prompt(5), "strong", time.time(), workflow="cascade(cheap,strong)"),
        ]
    )
    await store.close()
    report = await shadow_report(config, tmp_path / "podium.db", artifact, None, 10)
    assert report["scored"] == 3 and report["agree"] == 1
    assert report["changes"] == {"strong -> cascade(cheap,strong)": 2}
    # the candidate's choice is priced as the workflow, not as its last worker
    assert report["candidate_choice"]["cost"] < report["served"]["cost"]
