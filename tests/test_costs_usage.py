from __future__ import annotations

import json
from pathlib import Path

import pytest

from podium.costs.prices import packaged_table
from podium.costs.project import project
from podium.costs.render import projection_json
from podium.costs.sources import load_workloads
from podium.costs.usage import UsageError, read_usage, usage_workloads

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "costs"
DAY = 86_400
START = 1_788_220_800  # 2026-09-01T00:00:00Z


def test_openai_usage_api_buckets_csv() -> None:
    log = read_usage(EXAMPLES / "manufacturer-120-usage.csv")
    assert log.columns["model"] == "model"
    assert log.columns["requests"] == "num_model_requests"
    assert log.columns["workload"] == "project_id"
    assert not log.rejected
    workloads = usage_workloads(log)
    assert workloads.period_days == pytest.approx(30.0)
    by_name = {w.name: w for w in workloads.workloads}
    assert len(by_name) == 7
    assert "batch" in by_name["supplier-documents"].features
    assert 0 < by_name["supplier-documents"].batch_share < 1
    assert by_name["support-chat"].cached_tokens > 0
    total = sum(row.requests for row in log.rows)
    assert sum(w.observed_requests or 0 for w in workloads.workloads) == total


def test_request_log_jsonl_with_nested_fields_and_prompts() -> None:
    workloads = load_workloads(EXAMPLES / "accounting-60-usage.jsonl", packaged_table())
    by_name = {w.name: w for w in workloads.workloads}
    assert set(by_name) == {
        "client-emails",
        "document-summaries",
        "invoice-extraction",
        "payroll-checks",
        "tax-research",
    }
    assert "json" in by_name["invoice-extraction"].features
    assert by_name["invoice-extraction"].data_class == "confidential"  # IBANs in prompts
    assert by_name["invoice-extraction"].data_class_source == "inferred from prompts"
    assert by_name["payroll-checks"].data_class == "restricted"  # stated in metadata
    assert by_name["tax-research"].task == "research"
    assert by_name["tax-research"].need == "high"
    assert by_name["tax-research"].sample_prompts


def _csv(tmp_path: Path, text: str, name: str = "usage.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_legacy_export_column_names(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "timestamp,snapshot_id,n_requests,n_context_tokens_total,n_generated_tokens_total,"
        "api_key_name\n"
        f"{START},gpt-4o-2024-08-06,10,10000,2000,sales-bot\n"
        f"{START + 9 * DAY},gpt-4o-2024-08-06,30,30000,6000,sales-bot\n",
    )
    workloads = usage_workloads(read_usage(path))
    assert workloads.period_days == pytest.approx(10.0)  # daily buckets: the last day counts
    (workload,) = workloads.workloads
    assert workload.name == "sales-bot"
    assert workload.requests_per_day == pytest.approx(4.0)
    assert workload.input_tokens == pytest.approx(1000)


def test_iso_timestamps_and_chat_completion_style_rows(tmp_path: Path) -> None:
    rows = [
        {
            "created_at": "2026-09-01T09:00:00Z",
            "model_id": "gpt-4o-mini",
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "tools": [{"type": "function"}],
            "images": 1,
        },
        {
            "created_at": "2026-09-08T09:00:00Z",
            "model_id": "gpt-4o-mini",
            "prompt_tokens": 300,
            "completion_tokens": 40,
        },
    ]
    path = _csv(tmp_path, "\n".join(json.dumps(r) for r in rows) + "\n", "log.jsonl")
    workloads = usage_workloads(read_usage(path))
    (workload,) = workloads.workloads
    assert workload.features == {"tools", "vision"}
    assert workloads.period_days == pytest.approx(8.0)


def test_missing_columns_name_what_is_missing_and_what_is_accepted(tmp_path: Path) -> None:
    path = _csv(tmp_path, "timestamp,model,tokens\n1,gpt-4o,5\n")
    with pytest.raises(UsageError) as caught:
        read_usage(path)
    message = str(caught.value)
    assert "missing column(s) input_tokens, output_tokens" in message
    assert "prompt_tokens" in message and "n_generated_tokens_total" in message
    assert "the file has: timestamp, model, tokens" in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ("model,input_tokens,output_tokens\n", "no rows"),
        ("model,input_tokens,output_tokens\ngpt-4o,-5,3\n", "negative"),
        ("\x00\x01\xff", "not a text file"),
    ],
)
def test_empty_and_unusable_files_are_clear_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "usage.csv"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(UsageError, match=needle):
        read_usage(path)


def test_bad_rows_are_rejected_by_line_and_never_counted(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "timestamp,model,input_tokens,output_tokens,num_model_requests\n"
        f"{START},gpt-4o,1000,100,1\n"  # 2: good
        f"{START + 3600},gpt-4o,-1000,100,1\n"  # 3: negative
        f"{START + 7200},gpt-4o,99999999999,100,1\n"  # 4: absurd
        f"{START + 7200},gpt-4o,lots,100,1\n"  # 5: not a number
        f"{START + 7200},,1000,100,1\n"  # 6: no model
        f"{START + 7200},gpt-4o,1000,100,0\n"  # 7: tokens with zero requests
        f"{START + 7200},gpt-4o,0,0,0\n"  # 8: an empty bucket, harmless
        f"{START + 10800},gpt-4o,3000,300,1\n",  # 9: good
    )
    log = read_usage(path)
    assert [line for line, _ in log.rejected] == [3, 4, 5, 6, 7]
    assert log.empty == 1
    assert len(log.rows) == 2
    warning = log.warnings[-1]
    assert "5 of 8 row(s) rejected and NOT counted" in warning
    assert "negative" in warning and "absurd" in warning
    workloads = usage_workloads(log, period_days=1.0)
    (workload,) = workloads.workloads
    assert workload.observed_requests == 2
    result = project(workloads, packaged_table())
    as_run = result.get("as-run")
    assert as_run is not None
    expected = (4000 * 2.50 + 400 * 10.0) / 1_000_000  # gpt-4o list price, the two good rows
    assert as_run.priced.observed_usd == pytest.approx(expected)
    assert any("NOT counted" in warning for warning in result.warnings)


def test_unknown_models_are_reported_and_priced_as_unknown(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "timestamp,model,input_tokens,output_tokens\n"
        f"{START},gpt-4o,1000,100\n"
        f"{START + DAY},acme-secret-model,5000,500\n"
        f"{START + DAY},acme-secret-model,5000,500\n",
    )
    workloads = load_workloads(path, packaged_table(), period_days=1.0)
    names = {w.name for w in workloads.workloads}
    assert names == {"gpt-4o", "acme-secret-model"}  # never dropped
    result = project(workloads, packaged_table())
    as_run = result.get("as-run")
    assert as_run is not None
    assert as_run.priced.unpriced == {"acme-secret-model": pytest.approx(2 * 365)}
    assert as_run.priced.observed_usd == pytest.approx((1000 * 2.5 + 100 * 10) / 1e6)
    assert any("acme-secret-model" in warning for warning in result.warnings)
    # Every other architecture prices the unknown model's workload on known models.
    single = result.get("single-vendor")
    assert single is not None and not single.priced.unpriced
    assert "acme-secret-model" in single.priced.by_workload


def test_no_timestamps_asks_for_the_period(tmp_path: Path) -> None:
    path = _csv(tmp_path, "model,input_tokens,output_tokens\ngpt-4o,10,1\n")
    with pytest.raises(UsageError, match="--period-days"):
        usage_workloads(read_usage(path))
    assert usage_workloads(read_usage(path), period_days=7).period_days == 7


def test_unreadable_timestamps_are_warned_not_fatal(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "timestamp,model,input_tokens,output_tokens\n"
        f"{START},gpt-4o,10,1\nyesterday-ish,gpt-4o,10,1\n{START + DAY * 2},gpt-4o,10,1\n",
    )
    log = read_usage(path)
    assert len(log.rows) == 3
    assert any("timestamp" in warning for warning in log.warnings)


def test_bad_jsonl_lines_are_rejected_with_their_line(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        '{"model": "gpt-4o", "input_tokens": 10, "output_tokens": 1, "created": 1}\n'
        "{not json\n"
        '{"model": "gpt-4o", "input_tokens": 10, "output_tokens": 1, "created": 90000}\n',
        "log.jsonl",
    )
    log = read_usage(path)
    assert log.rejected == [(2, "not valid JSON")]


def test_usage_with_a_few_long_prompts_is_priced_at_their_tier(tmp_path: Path) -> None:
    """Per-request rows and a bucketed row (by its own average) each reach their own tier."""
    path = _csv(
        tmp_path,
        "timestamp,model,num_model_requests,input_tokens,output_tokens,feature\n"
        f"{START},gemini-2.5-pro,18,180000,9000,review\n"  # 18 requests of 10k
        f"{START},gemini-2.5-pro,1,250000,500,review\n"
        f"{START},gemini-2.5-pro,1,350000,500,review\n",
    )
    workloads = load_workloads(path, packaged_table(), period_days=1.0)
    (review,) = workloads.workloads
    assert review.input_tokens == pytest.approx(39_000)  # the mean is far below 200k
    assert review.above(200_000) == pytest.approx(0.1)
    gemini = packaged_table().models["gemini-2.5-pro"]
    billed = 18 * gemini.cost(10_000, 500) + gemini.cost(250_000, 500) + gemini.cost(350_000, 500)
    assert billed == pytest.approx(
        (180_000 * 1.25 + 9_000 * 10.0 + 600_000 * 2.5 + 1_000 * 15.0) / 1e6
    )
    result = project(workloads, packaged_table())
    as_run = result.get("as-run")
    assert as_run is not None
    assert as_run.priced.observed_usd == pytest.approx(billed)
    # The JSON says how the requests were split.
    bands = projection_json(result)["workloads"]["items"][0]["size_bands"]
    assert [(band["above"], band["share"]) for band in bands] == [
        (0, pytest.approx(0.9)),
        (200_000, pytest.approx(0.1)),
    ]
