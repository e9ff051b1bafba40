"""The live evaluation's numbers: per strategy, accuracy with a Wilson 95% interval, tokens,
worker calls, cost and latency per question, the workers used; the two targets checked (each
strategy judged as decided: :func:`as_decided`); a Markdown report and a quality-vs-cost plot.

Strategies are compared on the questions every one of them answered (a run stopped half way
still compares like with like); ``n`` says how many.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from podium.eval.live import Record

Z95 = 1.959963984540054


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a proportion (sensible at 0, 1 and small n)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # clamped to hold p itself: rounding can leave the bound a hair past it at 0 and 1
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def strategy_summary(records: Sequence[Record]) -> dict[str, Any]:
    n = len(records)
    correct = sum(r.correct for r in records)
    low, high = wilson(correct, n)
    calls: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    for record in records:
        calls.update(record.step_workers or ([record.worker] if record.worker else []))
        if record.worker:
            answered[record.worker] += 1
    total_calls = sum(calls.values())
    by_task: dict[str, dict[str, Any]] = {}
    for task in sorted({r.task for r in records}):
        group = [r for r in records if r.task == task]
        by_task[task] = {
            "n": len(group),
            "accuracy": sum(r.correct for r in group) / len(group),
            "cost_per_question": _mean([r.cost_usd for r in group]),
        }
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "ci95": [low, high],
        "tokens_per_question": _mean([r.tokens for r in records]),
        "input_tokens_per_question": _mean([r.input_tokens for r in records]),
        "output_tokens_per_question": _mean([r.output_tokens for r in records]),
        "calls_per_question": _mean([r.calls for r in records]),
        "cost_per_question": _mean([r.cost_usd for r in records]),
        "latency_p50_ms": percentile([r.latency_ms for r in records], 50),
        "latency_p95_ms": percentile([r.latency_ms for r in records], 95),
        "failures": sum(r.error is not None for r in records),
        "unparsed": sum((not r.parsed) and r.error is None for r in records),
        "usage_from_traces": sum(r.usage_source == "trace" for r in records),
        "worker_calls": {w: c / total_calls for w, c in calls.most_common()} if total_calls else {},
        "answered_by": {w: c / n for w, c in answered.most_common()} if n else {},
        "by_task": by_task,
    }


def summarise(records: Sequence[Record], strategies: Sequence[str]) -> dict[str, Any]:
    """Every strategy on the questions all of them answered, and the targets checked."""
    latest: dict[tuple[str, str], Record] = {}
    for record in records:
        if record.strategy in strategies:
            latest[(record.strategy, record.qid)] = record
    per: dict[str, set[str]] = {s: set() for s in strategies}
    for strategy, qid in latest:
        per[strategy].add(qid)
    present = [s for s in strategies if per[s]]
    common = set.intersection(*(per[s] for s in present)) if present else set()
    result: dict[str, Any] = {"n_questions": len(common), "strategies": {}}
    for strategy in present:
        group = [latest[(strategy, qid)] for qid in sorted(common)]
        result["strategies"][strategy] = strategy_summary(group)
    tasks = Counter(latest[(present[0], q)].task for q in common) if present else Counter()
    result["tasks"] = dict(sorted(tasks.items()))
    best = best_single(result["strategies"])
    decided = as_decided(latest, sorted(common), present, best) if best else {}
    result["targets"] = targets(result["strategies"], decided)
    return result


def best_single(summary: dict[str, dict[str, Any]]) -> str | None:
    """The most accurate single worker (the cheaper on a tie)."""
    singles = {k: v for k, v in summary.items() if k.startswith("single:")}
    if not singles:
        return None
    return max(singles, key=lambda k: (singles[k]["accuracy"], -singles[k]["cost_per_question"]))


def as_decided(
    latest: dict[tuple[str, str], Record],
    common: Sequence[str],
    strategies: Sequence[str],
    best: str,
) -> dict[str, dict[str, Any]]:
    """Each strategy's accuracy and cost with the best single worker's own answer standing in
    wherever the strategy's whole answer was one call to that worker: the same model asked
    twice differs by run-to-run noise (llama.cpp's batching), which is not the strategy's
    doing. What is left is what its decisions changed."""
    worker = best.removeprefix("single:")
    decided: dict[str, dict[str, Any]] = {}
    for name in strategies:
        if name.startswith("single:") or not common:
            continue
        correct, cost, same = 0, 0.0, 0
        for qid in common:
            record = latest[(name, qid)]
            if record.step_workers == [worker]:
                record, same = latest[(best, qid)], same + 1
            correct += record.correct
            cost += record.cost_usd
        decided[name] = {
            "accuracy": correct / len(common),
            "cost_per_question": cost / len(common),
            "answered_by_best_alone": same,
        }
    return decided


def targets(
    summary: dict[str, dict[str, Any]], decided: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Target 1: a Podium strategy at least as accurate as the best single worker at lower cost
    (or more accurate at no higher cost). Target 2: one with at least 5x fewer tokens per
    question than Mixture-of-Agents at no lower accuracy. Both judge a strategy by its accuracy
    and cost as decided (:func:`as_decided`)."""
    podium = {k: v for k, v in summary.items() if not k.startswith("single:") and k != "moa"}
    judged = {name: decided.get(name, s) for name, s in podium.items()}
    found: dict[str, Any] = {}
    best_name = best_single(summary)
    if best_name is not None:
        best = summary[best_name]
        found["best_single"] = {
            "strategy": best_name,
            "accuracy": best["accuracy"],
            "cost_per_question": best["cost_per_question"],
        }
        # A strategy whose every call went to the best worker is that worker: whatever it
        # differs by is the same model answering twice, not a gain.
        worker = best_name.removeprefix("single:")
        same = [n for n, s in podium.items() if set(s.get("worker_calls") or {}) == {worker}]
        meeting = [
            name
            for name, s in judged.items()
            if name not in same
            and (
                (
                    s["accuracy"] >= best["accuracy"]
                    and s["cost_per_question"] < best["cost_per_question"]
                )
                or (
                    s["accuracy"] > best["accuracy"]
                    and s["cost_per_question"] <= best["cost_per_question"]
                )
            )
        ]
        found["beats_best_single"] = {
            "met": bool(meeting),
            "by": meeting,
            "same_worker": same,
            "as_decided": decided,
        }
    moa = summary.get("moa")
    if moa is not None:
        meeting = []
        ratios = {}
        for name, s in podium.items():
            ratio = (
                moa["tokens_per_question"] / s["tokens_per_question"]
                if s["tokens_per_question"]
                else math.inf
            )
            ratios[name] = ratio
            if ratio >= 5 and judged[name]["accuracy"] >= moa["accuracy"]:
                meeting.append(name)
        found["five_x_fewer_tokens_than_moa"] = {
            "met": bool(meeting),
            "by": meeting,
            "moa_accuracy": moa["accuracy"],
            "moa_tokens_per_question": moa["tokens_per_question"],
            "token_ratio": ratios,
        }
    return found


# -- rendering ----------------------------------------------------------------------------------


def _micro(value: float) -> str:
    """USD as millionths of a dollar (local workers' nominal prices are tiny)."""
    return f"{value * 1e6:.2f}"


def markdown(result: dict[str, Any], *, command: str = "", notes: str = "") -> str:
    lines = ["# Live evaluation", ""]
    if command:
        lines += ["Reproduce with:", "", "```", command, "```", ""]
    tasks = ", ".join(f"{k} {v}" for k, v in result["tasks"].items())
    lines += [f"{result['n_questions']} questions answered by every strategy ({tasks}).", ""]
    lines += [
        "| strategy | accuracy | 95% CI | tokens/q | calls/q | cost/q (1e-6 USD) | p50 ms "
        "| p95 ms | failures | workers (share of calls) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in result["strategies"].items():
        mix = ", ".join(f"{w} {share:.0%}" for w, share in s["worker_calls"].items())
        lines.append(
            f"| {name} | {s['accuracy']:.3f} | {s['ci95'][0]:.3f}-{s['ci95'][1]:.3f} | "
            f"{s['tokens_per_question']:.0f} | {s['calls_per_question']:.2f} | "
            f"{_micro(s['cost_per_question'])} | {s['latency_p50_ms']:.0f} | "
            f"{s['latency_p95_ms']:.0f} | {s['failures']} | {mix} |"
        )
    task_names = list(result["tasks"])
    if task_names:
        lines += ["", "Accuracy per task:", ""]
        lines.append("| strategy | " + " | ".join(task_names) + " |")
        lines.append("|---|" + "---|" * len(task_names))
        for name, s in result["strategies"].items():
            cells = [
                f"{s['by_task'].get(t, {}).get('accuracy', float('nan')):.2f}" for t in task_names
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets", ""]
    found = result["targets"]
    if "beats_best_single" in found:
        best = found["best_single"]
        met = found["beats_best_single"]
        verdict = "met by " + ", ".join(met["by"]) if met["met"] else "not met"
        same = met.get("same_worker") or []
        aside = (
            f" ({', '.join(same)} sent every call to that worker, so it does not count: any "
            "difference is the same model answering twice)"
            if same
            else ""
        )
        lines.append(
            f"- Best single worker: {best['strategy']} at {best['accuracy']:.3f}, "
            f"{_micro(best['cost_per_question'])}e-6 USD/question. A Podium strategy at least as "
            f"accurate for less (or more accurate for no more): **{verdict}**{aside}."
        )
        worker = best["strategy"].removeprefix("single:")
        for name, d in (met.get("as_decided") or {}).items():
            alone = d["answered_by_best_alone"]
            if alone and name not in same:
                asked = result["strategies"][name]
                lines.append(
                    f"  - {name} as decided: {d['accuracy']:.3f} at "
                    f"{_micro(d['cost_per_question'])}e-6 USD/question ({asked['accuracy']:.3f} "
                    f"as asked). On the {alone} questions it gave to {worker} alone, that "
                    "worker's own single answers count: the same model asked twice differs only "
                    "by run-to-run noise."
                )
    if "five_x_fewer_tokens_than_moa" in found:
        moa = found["five_x_fewer_tokens_than_moa"]
        ratios = ", ".join(f"{k} {v:.1f}x" for k, v in moa["token_ratio"].items())
        verdict = "met by " + ", ".join(moa["by"]) if moa["met"] else "not met"
        lines.append(
            f"- Mixture-of-Agents: {moa['moa_accuracy']:.3f} at "
            f"{moa['moa_tokens_per_question']:.0f} tokens/question. At least 5x fewer tokens at "
            f"no lower accuracy: **{verdict}** (token ratios: {ratios})."
        )
    if notes:
        lines += ["", notes.strip()]
    lines += ["", "![quality vs cost](quality_cost.png)", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError("plots need matplotlib: pip install 'podium[plots]'") from error
    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=120)
    for name, s in result["strategies"].items():
        single = name.startswith("single:")
        x = s["cost_per_question"] * 1e6
        y = s["accuracy"]
        low, high = s["ci95"]
        axes.errorbar(
            x,
            y,
            yerr=[[y - low], [high - y]],
            fmt="o" if single else "s",
            color="grey" if single else ("tab:red" if name == "moa" else "tab:blue"),
            capsize=3,
            markersize=6,
        )
        axes.annotate(
            name.removeprefix("single:"),
            (x, y),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
        )
    axes.set_xlabel(
        "cost per question (nominal USD x 1e-6, priced by the workers' configured prices)"
    )
    axes.set_ylabel("accuracy (95% Wilson interval)")
    axes.set_title(f"Live evaluation: {result['n_questions']} questions")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
