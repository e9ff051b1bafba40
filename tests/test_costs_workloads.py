from __future__ import annotations

from pathlib import Path

import pytest

from podium.costs.prices import packaged_table
from podium.costs.project import project
from podium.costs.render import projection_text
from podium.costs.sources import detect, load_workloads
from podium.costs.workloads import (
    WorkloadError,
    infer_task,
    read_workload_file,
    workloads_from_traces,
)
from podium.store.traces import TraceRecord

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "costs"


def test_example_workload_files_load() -> None:
    manufacturer = read_workload_file(EXAMPLES / "manufacturer-120.yaml")
    assert manufacturer.days_per_year == 250
    assert "manufacturer" in manufacturer.organisation
    names = [workload.name for workload in manufacturer.workloads]
    assert {"quoting-emails", "supplier-documents", "plc-erp-scripts", "translation"} <= set(names)
    plc = next(w for w in manufacturer.workloads if w.name == "plc-erp-scripts")
    assert (plc.need, plc.task, plc.current_models()) == ("high", "code", ["gpt-4.1"])
    accounting = read_workload_file(EXAMPLES / "accounting-60.yaml")
    classes = {workload.data_class for workload in accounting.workloads}
    assert {"confidential", "restricted"} <= classes


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "workloads.yaml"
    path.write_text(text, encoding="utf-8")
    return path


ENTRY = "  - {name: a, requests_per_day: 10, input_tokens: 100, output_tokens: 50"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("workloads: []\n", "workloads"),
        ("workloads:\n" + ENTRY.replace("10,", "-10,") + "}\n", "requests_per_day"),
        ("workloads:\n" + ENTRY.replace("100,", "5000000,") + "}\n", "input_tokens"),
        ("workloads:\n" + ENTRY + ", quality: 1.5}\n", "quality"),
        ("workloads:\n" + ENTRY + ", quality: great}\n", "quality"),
        ("workloads:\n" + ENTRY + "}\n" + ENTRY + "}\n", "repeated"),
        ("workloads:\n  - {name: a}\n", "requests_per_day"),
        ("workloads: [oops\n", "not valid YAML"),
    ],
)
def test_bad_workload_files_are_clear_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(WorkloadError, match=needle) as caught:
        read_workload_file(path)
    assert str(path) in str(caught.value)


def test_quality_as_a_number_maps_to_a_grade(tmp_path: Path) -> None:
    path = _write(tmp_path, "workloads:\n" + ENTRY + ", quality: 0.9}\n")
    assert read_workload_file(path).workloads[0].need == "high"


@pytest.mark.parametrize(
    ("file", "kind"),
    [
        ("manufacturer-120.yaml", "workloads"),
        ("manufacturer-120-usage.csv", "usage"),
        ("accounting-60-usage.jsonl", "usage"),
    ],
)
def test_formats_are_detected(file: str, kind: str) -> None:
    assert detect(EXAMPLES / file) == kind


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="no such file"):
        load_workloads(tmp_path / "nope.csv", packaged_table())


def test_task_inference_prefers_the_name_then_prompts() -> None:
    assert infer_task([], "plc-erp-scripts") == "code"
    assert infer_task([], "supplier-documents") == "extraction"
    assert infer_task(["Please translate this into German"], "misc") == "translation"
    assert infer_task(["hello"], "misc") == "general"


def _trace(n: int, caller: str, steps: list[dict[str, object]], **extra: object) -> TraceRecord:
    return TraceRecord(
        trace_id=f"t{n}",
        created_at=1_000_000.0 + n * 3600,
        ingress="openai",
        caller=caller,
        owner="o",
        requested_model="podium/auto",
        route="rules:x",
        status="ok",
        http_status=200,
        input_tokens=sum(int(str(s["input_tokens"])) for s in steps),
        output_tokens=sum(int(str(s["output_tokens"])) for s in steps),
        steps=steps,
        **extra,  # type: ignore[arg-type]
    )


def test_traces_become_workloads_with_the_worker_mix_per_attempt() -> None:
    records = [
        _trace(0, "app-a", [{"worker": "big", "input_tokens": 100, "output_tokens": 10}]),
        _trace(
            1,
            "app-a",
            [
                {"worker": "small", "input_tokens": 0, "output_tokens": 0},  # failed, no tokens
                {"worker": "big", "input_tokens": 300, "output_tokens": 30},
            ],
        ),
        _trace(
            24,
            "app-b",
            [{"worker": "small", "input_tokens": 50, "output_tokens": 5}],
            data_class="confidential",
        ),
    ]
    workloads = workloads_from_traces(records, group_by="caller")
    assert workloads.kind == "traces"
    assert workloads.period_days == pytest.approx(1.0)
    a, b = workloads.workloads
    assert (a.name, a.observed_requests, a.input_tokens) == ("app-a", 2, 200)
    assert [(use.model, use.calls, use.input_tokens) for use in a.current] == [("big", 2, 400)]
    assert b.data_class == "confidential"


def test_no_traces_is_a_clear_error() -> None:
    with pytest.raises(WorkloadError, match="no traces"):
        workloads_from_traces([])


def test_traces_keep_long_prompts_apart_so_the_tier_prices_them() -> None:
    table = packaged_table()
    sizes = [20_000] * 9 + [400_000]  # a mean of 58k hides one prompt past 200k
    records = [
        _trace(
            n, "app", [{"worker": "claude-sonnet-4.5", "input_tokens": size, "output_tokens": 1000}]
        )
        for n, size in enumerate(sizes)
    ]
    workloads = workloads_from_traces(
        records, group_by="caller", period_days=1.0, thresholds=table.thresholds()
    )
    (workload,) = workloads.workloads
    assert workload.input_tokens == pytest.approx(58_000)
    assert workload.above(200_000) == pytest.approx(0.1)
    sonnet = table.models["claude-sonnet-4.5"]
    billed = sum(sonnet.cost(size, 1000) for size in sizes)  # each request at its own tier
    result = project(workloads, table)
    as_run = result.get("as-run")
    assert as_run is not None
    assert as_run.priced.observed_usd == pytest.approx(billed)
    assert as_run.priced.annual_usd == pytest.approx(billed * 365)
    single = result.get("single-vendor")
    assert single is not None and single.title.endswith("(claude-sonnet-4.5)")
    assert single.priced.observed_usd == pytest.approx(billed)
    # At the mean alone, the long prompt would have been priced at the base rate.
    assert sonnet.cost(58_000, 1000) * 10 < billed
    assert "58,000/1,000 (10% >200k)" in projection_text(result)


def test_without_thresholds_traces_are_priced_at_their_means() -> None:
    records = [
        _trace(n, "app", [{"worker": "w", "input_tokens": size, "output_tokens": 10}])
        for n, size in enumerate([1_000, 300_000])
    ]
    (workload,) = workloads_from_traces(records, group_by="caller").workloads
    assert workload.bands == () and workload.current[0].bands == ()
