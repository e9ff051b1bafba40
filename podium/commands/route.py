"""``podium route "PROMPT"``: the routing decision for a prompt, offline (no worker starts), and
``podium router fit-semantic``: per-route thresholds from labelled examples."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from podium.config import ConfigError, PodiumConfig, load_config
from podium.context import Caller
from podium.plugins import load_plugins
from podium.routing.base import RouteContext
from podium.routing.chain import (
    Routing,
    Verdict,
    build_routing,
    describe_decision,
    describe_verdict,
)
from podium.types import ChatRequest, Message, TextPart
from podium.workers import estimate_tokens

CONFIG_HELP = "podium.yaml to use (default: ./podium.yaml if present, else embedded)."


def router_group(main: click.Group) -> click.Group:
    """The ``podium router`` group, created by whichever command module asks first."""
    existing = main.commands.get("router")
    if isinstance(existing, click.Group):
        return existing

    @main.group()
    def router() -> None:
        """Build, fit and inspect Podium's routers."""

    return router


def _routing(config_path: str | None) -> tuple[PodiumConfig, Routing]:
    try:
        config = load_config(config_path)
        return config, build_routing(config, load_plugins())
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _request(prompt: str, model: str, system: str | None) -> ChatRequest:
    messages = [Message(role="system", content=[TextPart(system)])] if system else []
    messages.append(Message(role="user", content=[TextPart(prompt)]))
    return ChatRequest(model=model, messages=messages)


def _headers(pairs: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--header")
        headers[name.strip().lower()] = value
    return headers


def _explain(
    config: PodiumConfig, request: ChatRequest, context: RouteContext, trail: list[Verdict]
) -> str:
    decision = trail_winner(trail)
    lines = [
        f"request: model {request.model!r}, ~{estimate_tokens(request.prompt_text())} tokens, "
        f"data class {context.data_class!r}",
        f"eligible workers: {', '.join(w.name for w in context.eligible) or 'none'} "
        "(offline: data-class clearance only; keys and policy hooks apply when serving)",
    ]
    if context.checkers:
        checkers = ", ".join(w.name for w in context.checkers)
        lines.append(f"checkers (role: check, for check steps only): {checkers}")
    lines += ["", "routers, in chain order (the first decision wins):"]
    width = max([len(v.router) for v in trail] + [8])
    won = False
    for index, verdict in enumerate(trail, 1):
        mark = verdict.outcome.replace("_", " ")
        if verdict.outcome == "decided":
            mark = "would decide" if won else "DECIDED"
            won = True
        detail = f": {verdict.detail}" if verdict.detail else ""
        timing = f"  [{verdict.elapsed_ms:.3f} ms]" if verdict.outcome != "not_asked" else ""
        lines.append(f"  {index}. {verdict.router:<{width}}  {mark}{detail}{timing}")
    if decision is None:
        return "\n".join(lines)
    data = describe_decision(decision)
    lines += ["", f"decision: {data['route']} -> {', '.join(decision.workflow.workers)}"]
    steps = "; ".join(f"[{s['role']}] {s['worker']}" for s in data["workflow"]["steps"])
    lines.append(f"  workflow: {data['workflow']['template']}: {steps}")
    if decision.workflow.fallbacks:
        lines.append(f"  fallbacks: {', '.join(decision.workflow.fallbacks)}")
    if decision.candidates:
        shown = ", ".join(
            f"{c.label + ' ' if c.label else ''}{c.worker} {c.score:.3f}"
            for c in decision.candidates
        )
        lines.append(f"  candidates: {shown}")
    lines.append(f"  why: {decision.reason}")
    return "\n".join(lines)


def trail_winner(trail: list[Verdict]) -> Any:
    for verdict in trail:
        if verdict.outcome == "decided":
            return verdict.decision
    return None


def _read_examples(path: Path) -> list[tuple[str, str]]:
    """``text,label`` CSV or JSON lines with ``text`` (or ``prompt``) and ``label``."""
    examples: list[tuple[str, str]] = []
    try:
        if path.suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as handle:
                for row in csv.DictReader(handle):
                    examples.append((row.get("text") or row.get("prompt") or "", row["label"]))
        else:
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                item = json.loads(line)
                text = item.get("text", item.get("prompt"))
                if not isinstance(text, str) or "label" not in item:
                    raise click.ClickException(f"{path}:{number}: needs 'text' and 'label'")
                examples.append((text, str(item["label"] or "")))
    except (OSError, KeyError, json.JSONDecodeError) as error:
        raise click.ClickException(f"{path}: cannot read examples: {error}") from None
    return examples


def register(main: click.Group) -> None:
    @main.command()
    @click.argument("prompt")
    @click.option("--model", default="podium/auto", show_default=True, help="Requested model.")
    @click.option("--system", help="A system message to send before the prompt.")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
    @click.option("--header", "headers", multiple=True, help="NAME=VALUE, as a request header.")
    @click.option("--data-class", default="public", show_default=True)
    @click.option("--explain", is_flag=True, help="Ask every router and say why the winner won.")
    @click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
    def route(
        prompt: str,
        model: str,
        system: str | None,
        config_path: str | None,
        headers: tuple[str, ...],
        data_class: str,
        explain: bool,
        as_json: bool,
    ) -> None:
        """Show which workers would answer PROMPT, and how, without running anything.

        PROMPT "-" reads the prompt from standard input. Routers are built from the config's
        routing section; no worker is started and nothing is spent."""
        if prompt == "-":
            prompt = sys.stdin.read()
        if model.startswith("contract/"):
            raise click.ClickException(
                "a contract call is routed by its policy and routing hint, which this offline "
                "command does not load; ask a running gateway: POST /v1/route with "
                f'{{"model": "{model}", "messages": [...]}}'
            )
        config, routing = _routing(config_path)
        if data_class not in config.policy.classes:
            raise click.BadParameter(
                f"unknown data class {data_class!r} (policy.classes: "
                f"{', '.join(config.policy.classes)})",
                param_hint="--data-class",
            )
        request = _request(prompt, model, system)
        eligible = [w for w in config.workers if data_class in w.profile.cleared]
        context = RouteContext(
            caller=Caller(), eligible=eligible, headers=_headers(headers), data_class=data_class
        )
        trail: list[Verdict] = []
        try:
            decision = asyncio.run(routing.decide(request, context, trail=trail, ask_all=explain))
        except Exception as error:  # PodiumError: no eligible worker, unknown model
            raise click.ClickException(str(getattr(error, "message", error))) from None
        if as_json:
            payload = {
                "model": request.model,
                "eligible": [w.name for w in context.eligible],
                "checkers": [w.name for w in context.checkers],
                "decision": describe_decision(decision),
                "routers": [describe_verdict(v) for v in trail],
            }
            click.echo(json.dumps(payload, indent=2))
        elif explain:
            if trail_winner(trail) is None:  # the chain's own fallback decided
                trail.append(Verdict("fallback", "decided", 0.0, decision.reason, decision))
            click.echo(_explain(config, request, context, trail))
        else:
            click.echo(
                f"{', '.join(decision.workflow.workers)}\t{decision.route}\t{decision.reason}"
            )

    group = router_group(main)

    @group.command("fit-semantic")
    @click.option(
        "--examples",
        "examples_path",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Labelled examples: JSON lines {text, label} or CSV text,label.",
    )
    @click.option("--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
    @click.option("--router", "router_name", default="semantic", show_default=True)
    @click.option(
        "--precision",
        type=click.FloatRange(0, 1),
        help="Target precision per route (default: maximise F1).",
    )
    @click.option("--json", "as_json", is_flag=True)
    def fit_semantic(
        examples_path: Path,
        config_path: str | None,
        router_name: str,
        precision: float | None,
        as_json: bool,
    ) -> None:
        """Fit per-route similarity thresholds of a semantic router on labelled examples.

        A label naming no route (say "other") is a negative for every route. Prints the
        thresholds to put under each route in podium.yaml (``threshold:``)."""
        from podium.routing.semantic import SemanticRouter, fit_thresholds

        _, routing = _routing(config_path)
        try:
            router = routing.router(router_name)
        except Exception as error:
            raise click.ClickException(str(error)) from None
        if not isinstance(router, SemanticRouter) or not router.routes:
            raise click.ClickException(
                f"router {router_name!r} is not a semantic router with routes"
            )
        examples = _read_examples(examples_path)
        try:
            fits = fit_thresholds(router, examples, target_precision=precision)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        if as_json:
            click.echo(json.dumps([asdict(fit) for fit in fits], indent=2))
            return
        click.echo(f"# fitted on {len(examples)} examples from {examples_path.name}")
        for fit in fits:
            click.echo(
                f"{fit.route}: threshold {fit.threshold:.3f}  precision {fit.precision:.2f}  "
                f"recall {fit.recall:.2f}  F1 {fit.f1:.2f}  ({fit.support} labelled)"
            )
