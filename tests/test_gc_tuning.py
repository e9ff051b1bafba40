"""The server process's garbage collector: frozen after start-up, thresholds from the config."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from podium.app import create_podium
from podium.config import CollectorSettings, ConfigError, PodiumConfig, parse_config
from podium.gc_tuning import tune_collector
from tests.conftest import worker


@pytest.fixture
def collector() -> Iterator[None]:
    """Whatever a test does to this process's collector is undone after it."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_settings_freeze_the_heap_and_set_the_thresholds(collector: None) -> None:
    tune_collector(CollectorSettings(thresholds=(5000, 20, 30)))
    assert gc.get_threshold() == (5000, 20, 30)
    assert gc.get_freeze_count() > 0


def test_none_keeps_cpythons_thresholds_and_freezing_can_be_off(collector: None) -> None:
    before = gc.get_threshold()
    tune_collector(CollectorSettings(thresholds=None, freeze_after_start=False))
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_thresholds_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        parse_config({"server": {"gc": {"thresholds": [0, 10, 10]}}})
    config = parse_config({"server": {"gc": {"thresholds": [20000, 50, 100]}}})
    assert config.server.gc.thresholds == (20000, 50, 100)


async def _start_and_stop(podium: Any) -> None:
    for hook in podium.app.on_startup:
        await hook()
    for hook in reversed(podium.app.on_shutdown):
        await hook()


async def test_the_server_tunes_its_collector_at_start_up(
    make_config: Callable[..., PodiumConfig], collector: None
) -> None:
    config = make_config([worker("alpha", "openai", "http://127.0.0.1:9/v1")])
    await _start_and_stop(create_podium(config, tune_gc=True, start_workers=False))
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == config.server.gc.thresholds == (10_000, 10, 10)


async def test_an_app_built_inside_another_program_leaves_its_collector_alone(
    make_config: Callable[..., PodiumConfig], collector: None
) -> None:
    before = gc.get_threshold()
    config = make_config([worker("alpha", "openai", "http://127.0.0.1:9/v1")])
    await _start_and_stop(create_podium(config, start_workers=False))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
