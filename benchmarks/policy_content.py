"""What the content policy adds to one request: data classification (PII detection),
pseudonymisation, clearance, the injection screen, the cost guard, and restoring the answer.

Drives the hooks directly, the way the gateway calls them, on 1 KB prompts (one with PII
in it, one without), in several configurations side by side in one run.

    .venv/bin/python -m benchmarks.policy_content [--requests 3000] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.gateway.bodies import USER_AFTER
from podium.app import create_podium
from podium.config import parse_config
from podium.context import RequestContext
from podium.policy.ceiling import CostGuardHook
from podium.policy.content import DataPolicyHook, InjectionHook
from podium.routing.base import Candidate, Decision
from podium.types import ChatRequest, ChatResponse, Message, TextPart
from podium.workflow import Workflow

PII_PROMPT = (
    "Hello, my name is Maria Gonzalez and I am writing about my account. I moved last month "
    "and my new address is 4821 Willow Creek Road, Apt. 12, Springfield, IL 62704. Please "
    "update the billing details and send the confirmation to maria.gonzalez@example.com or "
    "call me on +1 (217) 555-0143. The card ending in the number 4111 1111 1111 1111 should "
    "stay the default. My colleague John Peters will also need access to the shared folder. "
    "Could you also tell me why the last invoice was higher than usual? It looked like there "
    "were two charges for the same service in March, and I would like a refund for the "
    "duplicate. I have attached the reference number from the statement. Thanks a lot for "
    "your help, and please let me know if you need anything else from me to process this "
    "request quickly. The whole team is waiting on this before the quarterly review starts."
)[:1024]
PLAIN_PROMPT = ("The quarterly report shows revenue up four percent on the year. " * 17)[:1024]
PROMPTS = (
    ("1 KB with PII", PII_PROMPT),
    ("1 KB without PII", PLAIN_PROMPT),
    ("chat message (the gateway benchmark's)", USER_AFTER.lstrip(": ")),
)

CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "patterns + heuristics (no tagger, no classifier)": {
        "pii": {"engines": ["patterns"]},
        "injection": {"classifier": False},
    },
    "default: patterns + tagger + heuristics + classifier": {},
}


def request(prompt: str, number: int) -> ChatRequest:
    """The same system prompt every time, as clients send it; a user prompt never seen before
    (its number in front), so the policy's per-text memo cannot answer the screening."""
    return ChatRequest(
        model="vendor",
        messages=[
            Message(role="system", content=[TextPart("You are a helpful support assistant.")]),
            Message(role="user", content=[TextPart(f"Ticket {number}. {prompt}")]),
        ],
        max_tokens=256,
    )


async def run(config_policy: dict[str, Any], prompt: str, count: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        config = parse_config(
            {
                "data_dir": folder,
                "workers": [
                    {
                        "name": "vendor",
                        "provider": "openai",
                        "model": "m",
                        "base_url": "http://127.0.0.1:9",
                        "price": {"input": 1.0, "output": 2.0},
                        "profile": {"cleared": ["public"], "pseudonymised": ["confidential"]},
                    }
                ],
                "policy": config_policy,
            }
        )
        podium = create_podium(config, start_workers=False)
        hooks = [
            h for h in podium.hooks if isinstance(h, InjectionHook | DataPolicyHook | CostGuardHook)
        ]
        workers = [w.config for w in podium.pool]
        decision_workflow = Workflow.single("vendor")
        timings: list[float] = []
        for index in range(count + 200):
            context = RequestContext(ingress="openai", headers={})
            chat = request(prompt, index)
            started = time.process_time()
            for hook in hooks:
                await hook.admit(chat, context)
            for hook in hooks:
                chat = await hook.transform_request(chat, context)
            allowed = workers
            for hook in hooks:
                allowed = hook.eligible(allowed, chat, context)
            decision = Decision(
                workflow=decision_workflow,
                router="direct",
                reason="bench",
                candidates=[Candidate("vendor", 1.0)],
            )
            for hook in hooks:
                await hook.decided(chat, decision, context)
            # The answer echoes the (pseudonymised) prompt, so restoring has work to do.
            response = ChatResponse(id="x", model="vendor", text=chat.messages[-1].text())
            for hook in hooks:
                response = hook.transform_response(response, context)
            elapsed = (time.process_time() - started) * 1e6
            if index >= 200:
                timings.append(elapsed)
        return timings


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(count: int) -> str:
    lines = [
        f"Content policy per request (screen + classify/detect PII + pseudonymise + clearance + "
        f"cost guard + restore the answer), a user prompt never seen before plus a short "
        f"system prompt, "
        f"{count} requests after 200 warm-up, one process, CPython {platform.python_version()} "
        f"on {platform.machine()}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
        "cores while measuring. Times are this process's CPU time, so other jobs on the "
        "machine inflate them less than wall time (they still slow the shared cores).",
        "",
        "| configuration | prompt | p50 CPU µs | p99 CPU µs | mean CPU µs |",
        "|---|---|---|---|---|",
    ]
    results: dict[tuple[str, str], float] = {}
    for name, policy in CONFIGURATIONS.items():
        for label, prompt in PROMPTS:
            timings = await run(policy, prompt, count)
            p50 = statistics.median(timings)
            results[(name, label)] = p50
            lines.append(
                f"| {name} | {label} | {p50:.0f} | {pct(timings, 0.99):.0f} | "
                f"{statistics.fmean(timings):.0f} |"
            )
    lines += [
        "",
        "Target for the whole policy layer: p50 < 2 ms (2000 µs) on a 1 KB prompt.",
        "",
        "Rerun: `.venv/bin/python -m benchmarks.policy_content --out "
        "benchmarks/results/policy_content.md`",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = asyncio.run(main_async(args.requests))
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
