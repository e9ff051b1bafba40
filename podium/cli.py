"""The ``podium`` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from podium.config import ConfigError, PodiumConfig, load_config


def _load(config_path: str | None) -> PodiumConfig:
    try:
        return load_config(config_path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="podium")
def main() -> None:
    """Podium: one OpenAI- and Anthropic-compatible endpoint in front of a pool of models,
    deciding for every request which workers answer it and how.

    Start with `podium serve`, then point any OpenAI or Anthropic SDK at
    http://127.0.0.1:8400/v1.
    """


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="podium.yaml to use (default: ./podium.yaml if present, else embedded).",
)
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8400).")
@click.option("--workers", "processes", type=int, help="Server processes (default 1).")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="How much the server logs.",
)
def serve(
    config_path: str | None,
    host: str | None,
    port: int | None,
    processes: int | None,
    log_level: str,
) -> None:
    """Run the gateway."""
    import uvicorn

    config = _load(config_path)
    # Provider options (a local model's pin, say) are checked by each provider: do it now, so
    # a mistake is one clear line here rather than a traceback from the server's start-up.
    from podium.commands.workers import provider_findings

    source = config_path or os.environ.get("PODIUM_CONFIG", "config")
    problems, warnings = provider_findings(config, source)
    if problems:
        raise click.ClickException("\n".join(problems))
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    # Rules, routers, contracts and policy are checked as the app is built: a mistake there
    # is one clear line too, not a traceback from the server process.
    from podium.commands.workers import build_problem

    if (problem := build_problem(config)) is not None:
        raise click.ClickException(problem)
    if config_path:
        os.environ["PODIUM_CONFIG"] = str(Path(config_path).resolve())
    host = host or config.server.host
    port = port if port is not None else config.server.port
    processes = processes or config.server.workers
    os.environ["PODIUM_HOST"], os.environ["PODIUM_PORT"] = host, str(port)
    os.environ["PODIUM_SERVER_WORKERS"] = str(processes)
    names = ", ".join(worker.name for worker in config.workers)
    if processes > 1 and config.access.limits.backend == "memory":
        click.echo(
            f"podium: warning: {processes} processes with access.limits.backend: memory: rate "
            "limits, budgets and workers' limits are counted per process; use the redis "
            "backend to share them",
            err=True,
        )
    click.echo(f"podium: serving on http://{host}:{port}/v1 with workers: {names}", err=True)
    uvicorn.run(
        "podium.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=processes,
        log_level=log_level,
        access_log=False,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=30,
        # A process still starting on a busy machine (loading models) can miss uvicorn's 5 s
        # health ping; the default would kill and restart it, over and over.
        timeout_worker_healthcheck=60,
        timeout_keep_alive=config.server.keep_alive,
        limit_concurrency=config.server.max_connections,
    )


def _register_subcommands() -> None:
    from podium.commands import register_commands

    register_commands(main)


_register_subcommands()
