"""What the workers that run model-written code share (providers/sandboxed.py), for each of
them: the examples checker and the python runner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from podium import confinement, sandbox
from podium.app import create_podium
from podium.config import ConfigError
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.test_providers_examples import CHECKER
from tests.test_providers_python_run import RUNNER

ANSWERER = worker("a", "openai", "http://127.0.0.1:9")
BOTH = pytest.mark.parametrize(
    ("entry", "does"),
    [(CHECKER, "checks drafts"), (RUNNER, "runs programs an earlier step wrote")],
    ids=["examples", "python"],
)


@BOTH
def test_it_must_be_configured_to_only_check_or_run(
    make_config: Callable[..., Any], entry: dict[str, Any], does: str
) -> None:
    as_answerer = {**entry, "role": "answer"}
    message = f"the {entry['provider']} provider only {does}; give the worker role: check"
    with pytest.raises(ConfigError, match=message):
        create_podium(make_config([ANSWERER, as_answerer]))
    with pytest.raises(ConfigError, match=r"options\.timeout_s"):
        create_podium(make_config([ANSWERER, {**entry, "options": {"timeout_s": 0}}]))


@BOTH
def test_requiring_the_kernels_limits_refuses_a_machine_without_them(
    make_config: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    entry: dict[str, Any],
    does: str,
) -> None:
    strict = {**entry, "options": {"require_kernel_limits": True}}
    monkeypatch.setattr(confinement, "offered", lambda: ("landlock-files",))
    with pytest.raises(ConfigError, match="does not offer landlock-tcp, landlock-signals, seccomp"):
        create_podium(make_config([ANSWERER, strict]))
    monkeypatch.setattr(confinement, "offered", lambda: confinement.EVERY_LIMIT)
    create_podium(make_config([ANSWERER, strict]))


@BOTH
async def test_without_the_kernels_limits_it_says_so_at_start(
    gateway: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    entry: dict[str, Any],
    does: str,
) -> None:
    monkeypatch.setattr(confinement, "offered", lambda: ("landlock-files", "landlock-tcp"))
    async with (
        FakeOpenAI(Behaviour(reply="ok")) as only,
        gateway([worker("answerer", "openai", only.base_url), entry]),
    ):
        pass
    said = f"{entry['name']!r} runs model-written code without landlock-signals, seccomp"
    assert said in caplog.text


@BOTH
async def test_a_sandbox_that_cannot_run_code_stops_the_gateway_at_start(
    make_config: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    entry: dict[str, Any],
    does: str,
) -> None:
    podium = create_podium(make_config([ANSWERER, entry]))
    runs_code = podium.pool.get(entry["name"])
    assert runs_code is not None
    await runs_code.provider.start()  # this machine's sandbox runs code
    # as where the kernel offers a limit that cannot be set: the launcher stops the code
    monkeypatch.setattr(sandbox, "LAUNCHER", "raise SystemExit('sandbox: no limits here')")
    with pytest.raises(ConfigError, match=r"cannot run code on this machine \(.*no limits here"):
        await runs_code.provider.start()
