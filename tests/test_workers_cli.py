from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from podium.cli import main
from podium.commands.workers import worker_rows
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker


async def podium(*args: str, env: dict[str, str] | None = None) -> Result:
    # The gateway runs on this event loop; the CLI blocks, so it runs on a thread.
    return await asyncio.to_thread(
        CliRunner().invoke, main, list(args), env=env or {"PODIUM_ADMIN_KEY": ""}
    )


async def test_ls_add_set_drain_rm_against_a_running_gateway(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        url = ["workers", "--url", running.url]
        listed = await podium(*url, "ls")
        assert listed.exit_code == 0, listed.output
        assert listed.output.splitlines()[0].split()[:3] == ["NAME", "PROVIDER", "MODEL"]
        assert "alpha" in listed.output and "closed" in listed.output

        added = await podium(
            *url,
            "add",
            "beta",
            "--provider",
            "openai",
            "--model",
            "beta-model",
            "--base-url",
            fake_openai.base_url,
            "--input-price",
            "0.5",
            "context_window=32768",
            "capabilities=[tools,streaming]",
        )
        assert added.exit_code == 0, added.output
        beta = running.podium.pool.get("beta")
        assert beta is not None
        assert beta.config.context_window == 32768
        assert beta.config.capabilities == ["tools", "streaming"]

        repriced = await podium(*url, "set", "beta", "--output-price", "4", "price.input=1.5")
        assert repriced.exit_code == 0, repriced.output
        assert beta.config.price.input == 1.5 and beta.config.price.output == 4
        limited = await podium(*url, "set", "beta", "limits.concurrency=3", "limits.rpm=600")
        assert limited.exit_code == 0, limited.output
        assert beta.capacity.slots == 3 and beta.capacity.limits.rpm == 600
        assert "0/3" in (await podium(*url, "ls")).output

        assert (await podium(*url, "drain", "beta")).exit_code == 0
        assert "draining" in (await podium(*url, "ls")).output
        assert (await podium(*url, "undrain", "beta")).exit_code == 0
        assert running.podium.pool.get("beta").draining is False

        removed = await podium(*url, "rm", "beta")
        assert removed.exit_code == 0, removed.output
        assert running.podium.pool.names() == ["alpha"]

        missing = await podium(*url, "rm", "beta")
        assert missing.exit_code != 0
        assert "404" in missing.output and "beta" in missing.output

        invalid = await podium(*url, "add", "gamma", "--provider", "openai")
        assert invalid.exit_code != 0 and "model" in invalid.output


async def test_admin_key_comes_from_the_environment(
    gateway: Any, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_TEST_ADMIN", "k-0123456789")
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)],
        server={"admin_key_env": "CLI_TEST_ADMIN"},
    ) as running:
        refused = await podium("workers", "--url", running.url, "ls")
        allowed = await podium(
            "workers", "--url", running.url, "ls", env={"PODIUM_ADMIN_KEY": "k-0123456789"}
        )
    assert refused.exit_code != 0 and "admin key" in refused.output
    assert allowed.exit_code == 0 and "alpha" in allowed.output


def test_a_gateway_that_is_not_running_gets_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(main, ["workers", "--url", f"http://127.0.0.1:{port}", "ls"])
    assert result.exit_code == 1
    assert "cannot reach Podium" in result.output and "podium serve" in result.output
    assert "Traceback" not in result.output


def test_check_lists_a_valid_pool(tmp_path: Path) -> None:
    config = tmp_path / "podium.yaml"
    config.write_text(
        "workers:\n"
        "  - {name: cheap, provider: openai, model: m1, base_url: 'http://127.0.0.1:9/v1',\n"
        "     api_key_env: PODIUM_TEST_UNSET_KEY, price: {input: 0.1, output: 0.4}}\n"
        "  - {name: local, provider: local, model: SmolLM2, options: {model: smollm2-135m}}\n"
    )
    result = CliRunner().invoke(main, ["workers", "check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "cheap" in result.output and "0.4" in result.output and "local" in result.output
    assert "PODIUM_TEST_UNSET_KEY is not set" in result.output


def test_check_the_shipped_pool_example() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "pool.yaml"
    result = CliRunner().invoke(main, ["workers", "check", "--config", str(example)])
    # The Qwen wheels may not be installed (make pool): that is a warning, not an error.
    assert result.exit_code == 0, result.output
    for name in ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"):
        assert name in result.output


def test_check_warns_of_a_checker_without_the_kernels_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from podium import confinement

    config = tmp_path / "podium.yaml"
    config.write_text(
        "workers:\n"
        "  - {name: a, provider: openai, model: m, base_url: 'http://127.0.0.1:9/v1'}\n"
        "  - {name: examples, provider: examples, model: docstring-examples, role: check}\n"
    )
    monkeypatch.setattr(confinement, "offered", lambda: ("landlock-files",))
    result = CliRunner().invoke(main, ["workers", "check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    warning = "warning: worker 'examples' runs model-written code without landlock-tcp"
    assert warning in result.output
    monkeypatch.setattr(confinement, "offered", lambda: confinement.EVERY_LIMIT)
    result = CliRunner().invoke(main, ["workers", "check", "--config", str(config)])
    assert result.exit_code == 0 and "warning" not in result.output, result.output


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("workers: [{name: a, provider: openai}]", ["workers.0.model", "Field required"]),
        (
            "workers: [{name: a, provider: local, model: x, options: {model: nope}}]",
            ["workers.0 (a)", "unknown local model 'nope'"],
        ),
        (
            "workers: [{name: a, provider: openai, model: m, options: {colour: red}}]",
            ["options.colour"],
        ),
        ("workers: [{name: a, provider: warp, model: m}]", ["unknown provider 'warp'"]),
        # Found as the app is built: routing, contracts, policy.
        (
            "workers: [{name: a, provider: openai, model: m}]\n"
            "routing: {rules: [{name: r, match: {regex: ['(']}, worker: a}]}",
            ["rule 'r': regular expression '(' does not compile"],
        ),
        (
            "workers: [{name: a, provider: openai, model: m}]\n"
            "policy: {injection: {hardened_workers: [b]}}",
            ["hardened_workers: 'b' is not a configured worker"],
        ),
    ],
)
def test_check_names_what_is_wrong(tmp_path: Path, text: str, needles: list[str]) -> None:
    config = tmp_path / "podium.yaml"
    config.write_text(text)
    result = CliRunner().invoke(main, ["workers", "check", "--config", str(config)])
    assert result.exit_code == 1
    for needle in needles:
        assert needle in result.output
    assert "Traceback" not in result.output


def _commands(output: str) -> list[str]:
    return output.split("Commands:", 1)[1].strip().splitlines()


def test_help_reads_well() -> None:
    top = CliRunner().invoke(main, ["--help"])
    assert top.exit_code == 0
    listed = [line for line in _commands(top.output) if line.split()[0] in ("serve", "workers")]
    assert len(listed) == 2
    assert not any(line.endswith("...") for line in listed)  # no truncated one-line help
    sub = CliRunner().invoke(main, ["workers", "--help"])
    listed = _commands(sub.output)
    names = {line.split()[0] for line in listed}
    assert names >= {"ls", "add", "set", "drain", "undrain", "rm", "check"}
    assert not any(line.endswith("...") for line in listed)


def test_workers_that_do_not_answer_chat_say_so(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from podium.cli import main

    example = Path(__file__).resolve().parent.parent / "examples" / "vendors.yaml"
    result = CliRunner().invoke(main, ["workers", "check", "--config", str(example)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "embed only" in rows["text-embedding-3-small"]
    assert "only" not in rows["gpt-4o-mini"]


def test_ls_shows_a_workers_slots_and_an_upstreams_pause() -> None:
    [row] = worker_rows(
        [
            {
                "name": "alpha",
                "provider": "openai",
                "model": "m",
                "price": {"input": 1, "output": 2},
                "health": {
                    "circuit": "closed",
                    "in_flight": 3,
                    "slots": 8,
                    "resting_seconds": 12.5,
                },
            }
        ]
    )
    assert row[-3:] == ["serving, resting 12.5s", "closed", "3/8"]
