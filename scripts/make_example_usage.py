"""Write the example usage exports in examples/costs/ from the example workload files.

    python scripts/make_example_usage.py

Deterministic (fixed seed): the same files every run. The manufacturer's export is a CSV of
hourly buckets in the shape of OpenAI's usage API (one row per hour, project and model); the
accounting practice's is a JSONL request log with prompts, as a logging proxy would keep it.
Both cover September 2026 (22 working days).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import random
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent.parent / "examples" / "costs"
SEED = 120_60
MONTH_START = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
MONTH_DAYS = 30

# Dated snapshots as an export names them.
SNAPSHOTS = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "claude-sonnet-4.5": "claude-sonnet-4-5-20250929",
}

PROMPTS = {
    "invoice-extraction": [
        "Extract the invoice number, date, supplier VAT id, IBAN {iban} and line items as JSON "
        "from this invoice: {company} invoice {n}, net {amount} EUR...",
    ],
    "client-emails": [
        "Draft a reply email to {person} at {company} explaining which documents we still need "
        "for their {year} tax return and the filing deadline.",
        "Write a reply to {person} about our fee for the {year} annual accounts of {company}.",
    ],
    "tax-research": [
        "Analyze the tax treatment of a {amount} EUR grant received by {company} for R&D; cite "
        "the statute and guidance and compare capital and revenue treatment.",
        "What are the implications for VAT of {company} selling software licences to "
        "customers in other EU states? Cite the regulation.",
    ],
    "document-summaries": [
        "Summarise the key points of this confidential lease agreement between {company} and "
        "its landlord for the client file: term, rent, break clauses...",
        "Summarise these board minutes of {company} in bullet points for the partner.",
    ],
    "payroll-checks": [
        "Check this payroll run for {company}: flag any salary change over 10% and any "
        "employee without a tax id. Rows: ...",
    ],
}
COMPANIES = ["Nordfeld GmbH", "Kaya Bakery", "Orbis Freight", "Lindqvist AB", "Hale & Sons"]
PEOPLE = ["Ms Weber", "Mr Okafor", "Ms Lindqvist", "Mr Hale", "Dr Novak"]


def noisy(rng: random.Random, mean: float, sigma: float) -> int:
    """A log-normal draw whose expectation is ``mean``."""
    return max(1, round(mean * math.exp(rng.gauss(0, sigma) - sigma * sigma / 2)))


def working_days() -> list[dt.datetime]:
    days = [MONTH_START + dt.timedelta(days=offset) for offset in range(MONTH_DAYS)]
    return [day for day in days if day.weekday() < 5]


def per_day_factor() -> float:
    """Scale the YAML's per-working-day volume so a month holds 250/12 working days' worth."""
    return (250 / 12) / len(working_days())


def poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method is fine for the small hourly means used here.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def manufacturer(rng: random.Random) -> list[dict[str, Any]]:
    spec = yaml.safe_load((HERE / "manufacturer-120.yaml").read_text(encoding="utf-8"))
    rows = []
    for day in working_days():
        for hour in range(8, 18):
            start = day + dt.timedelta(hours=hour)
            for workload in spec["workloads"]:
                mean = workload["requests_per_day"] * per_day_factor() / 10
                count = poisson(rng, mean)
                if count == 0:
                    continue
                model = workload["current_model"]
                batch = workload["name"] == "supplier-documents" and rng.random() < 0.3
                inputs = sum(noisy(rng, workload["input_tokens"], 0.35) for _ in range(count))
                outputs = sum(noisy(rng, workload["output_tokens"], 0.35) for _ in range(count))
                cached = round(inputs * 0.2) if workload["name"] == "support-chat" else 0
                rows.append(
                    {
                        "start_time": int(start.timestamp()),
                        "end_time": int((start + dt.timedelta(hours=1)).timestamp()),
                        "project_id": workload["name"],
                        "model": SNAPSHOTS.get(model, model),
                        "num_model_requests": count,
                        "input_tokens": inputs,
                        "output_tokens": outputs,
                        "input_cached_tokens": cached,
                        "batch": str(batch).lower(),
                    }
                )
    return rows


def iban(rng: random.Random) -> str:
    digits = "".join(str(rng.randrange(10)) for _ in range(18))
    return f"DE{rng.randrange(10, 99)} {digits[:4]} {digits[4:8]} {digits[8:12]} {digits[12:16]}"


def accounting(rng: random.Random) -> list[dict[str, Any]]:
    spec = yaml.safe_load((HERE / "accounting-60.yaml").read_text(encoding="utf-8"))
    rows = []
    for day in working_days():
        for workload in spec["workloads"]:
            count = poisson(rng, workload["requests_per_day"] * per_day_factor())
            for _ in range(count):
                moment = day + dt.timedelta(seconds=rng.randrange(8 * 3600, 18 * 3600))
                template = rng.choice(PROMPTS[workload["name"]])
                prompt = template.format(
                    iban=iban(rng),
                    company=rng.choice(COMPANIES),
                    person=rng.choice(PEOPLE),
                    n=rng.randrange(10_000, 99_999),
                    amount=rng.randrange(200, 90_000),
                    year=rng.choice([2025, 2026]),
                )
                model = workload["current_model"]
                metadata = {"feature": workload["name"]}
                if workload["data_class"] == "restricted":
                    metadata["data_class"] = "restricted"
                row: dict[str, Any] = {
                    "created": int(moment.timestamp()),
                    "model": SNAPSHOTS.get(model, model),
                    "metadata": metadata,
                    "messages": [{"role": "user", "content": prompt}],
                    "usage": {
                        "prompt_tokens": noisy(rng, workload["input_tokens"], 0.4),
                        "completion_tokens": noisy(rng, workload["output_tokens"], 0.4),
                    },
                }
                if "json" in workload.get("features", []):
                    row["response_format"] = {"type": "json_schema"}
                rows.append(row)
    rows.sort(key=lambda row: row["created"])
    return rows


def main() -> None:
    rng = random.Random(SEED)
    rows = manufacturer(rng)
    with (HERE / "manufacturer-120-usage.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"manufacturer-120-usage.csv: {len(rows)} rows")
    lines = accounting(rng)
    with (HERE / "accounting-60-usage.jsonl").open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
    print(f"accounting-60-usage.jsonl: {len(lines)} rows")


if __name__ == "__main__":
    main()
