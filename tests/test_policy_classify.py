from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from podium.config import ConfigError, parse_config
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.policy.classify import DataClasses
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker


def profile(cleared: list[str], pseudonymised: list[str] | None = None) -> dict[str, Any]:
    return {"profile": {"cleared": cleared, "pseudonymised": pseudonymised or []}}


def test_clearance_is_a_ceiling_and_pseudonymised_clearance_needs_pseudonyms() -> None:
    config = parse_config(
        {"workers": [worker("w", "openai", "http://x", **profile(["internal"], ["restricted"]))]}
    )
    classes = DataClasses(config.policy)
    w = config.workers[0]
    assert classes.cleared(w, "public", pseudonymised=False)
    assert classes.cleared(w, "internal", pseudonymised=False)
    assert not classes.cleared(w, "confidential", pseudonymised=False)
    assert classes.cleared(w, "confidential", pseudonymised=True)
    assert classes.needs_pseudonyms(w, "restricted")


def test_contract_declaration_raises_the_class_and_unknown_names_are_refused() -> None:
    classes = DataClasses(parse_config({}).policy)
    context = RequestContext(ingress="contract", headers={})
    classes.declare(context, "Confidential")
    assert context.data_class == "confidential"
    classes.declare(context, "internal")  # never lowers it
    assert context.data_class == "confidential"
    with pytest.raises(PodiumError) as refused:
        classes.declare(context, "top-secret")
    assert refused.value.status == 400


def test_a_worker_naming_an_unknown_class_is_a_config_error(make_config: Any) -> None:
    from podium.app import create_podium

    config = make_config([worker("w", "openai", "http://x", **profile(["secret"]))])
    with pytest.raises(ConfigError, match="unknown data class 'secret'"):
        create_podium(config, start_workers=False)


def test_a_hardened_worker_that_is_not_configured_is_a_config_error(make_config: Any) -> None:
    # A typo here left the reroute with no worker: every flagged request was refused.
    with pytest.raises(ConfigError, match="hardened_workers: 'hardend' is not a configured"):
        make_config(
            [worker("w", "openai", "http://x")],
            policy={"injection": {"action": "reroute", "hardened_workers": ["hardend"]}},
        )


async def test_pii_makes_a_request_confidential_and_no_cleared_worker_means_403(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("public-only", "openai", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        ok = await client.chat.completions.create(
            model="public-only", messages=[{"role": "user", "content": "What is 2 + 2?"}]
        )
        assert ok.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await client.chat.completions.create(
                model="public-only",
                messages=[{"role": "user", "content": "My SSN is 219-09-9999, is that safe?"}],
            )
    assert "confidential" in str(refused.value) and "US_SSN" in str(refused.value)
    assert len(fake_openai.received) == 1  # the refused request was never sent


async def test_declared_header_routes_only_to_cleared_workers(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = [
        worker("cheap", "openai", fake_openai.base_url, **profile(["public"])),
        worker("onprem", "openai", fake_openai.base_url, **profile(["restricted"])),
    ]
    async with (
        gateway(workers) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="podium/auto",
            messages=[{"role": "user", "content": "summarise the board minutes"}],
            extra_headers={"x-podium-data-class": "restricted"},
        )
        assert raw.headers["x-podium-worker"] == "onprem"
        # Naming an uncleared worker: the router refuses it as not available to this request.
        with pytest.raises((openai.PermissionDeniedError, openai.NotFoundError)):
            await client.chat.completions.create(
                model="cheap",
                messages=[{"role": "user", "content": "summarise the board minutes"}],
                extra_headers={"x-podium-data-class": "restricted"},
            )
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="podium/auto",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-podium-data-class": "ultra"},
            )
    assert "unknown data class" in str(bad.value)
    assert all(json.dumps(r.body).count("board minutes") for r in fake_openai.received)


async def test_fallbacks_never_leave_the_cleared_set(gateway: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.behaviour.fail(500, times=10)
    workers = [
        worker("onprem", "openai", fake_openai.base_url, **profile(["restricted"])),
        worker("cheap", "openai", fake_openai.base_url, **profile(["public"])),
    ]
    async with (
        gateway(workers) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        with pytest.raises(openai.APIStatusError):
            await client.chat.completions.create(
                model="podium/auto",
                messages=[{"role": "user", "content": "restricted plans"}],
                extra_headers={"x-podium-data-class": "restricted"},
            )
    models = {r.body["model"] for r in fake_openai.received}
    assert models == {"onprem-model"}


SEEING = {"capabilities": ["streaming", "vision"]}


def with_image(text: str) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


async def test_images_get_the_configured_class_floor_since_no_detector_reads_them(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = [
        worker("vendor", "openai", fake_openai.base_url, **profile(["internal"]), **SEEING),
        worker("onprem", "openai", fake_openai.base_url, **profile(["restricted"]), **SEEING),
    ]
    async with (
        gateway(workers, policy={"images_class": "confidential"}) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        text = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=[{"role": "user", "content": "what is this?"}]
        )
        image = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=[{"role": "user", "content": with_image("what is this?")}]
        )
        # a worker cleared below the floor is not available to this request
        with pytest.raises((openai.PermissionDeniedError, openai.NotFoundError)):
            await client.chat.completions.create(
                model="vendor", messages=[{"role": "user", "content": with_image("and this?")}]
            )
        await running.podium.recorder.flush()
        trace = await running.podium.store.get_trace(image.headers["x-podium-trace-id"])
    assert text.headers["x-podium-worker"] == "vendor"  # text alone: the lowest class
    assert image.headers["x-podium-worker"] == "onprem"
    assert trace is not None and "images:unscanned" in trace.policy_actions
    assert "class:confidential" in trace.policy_actions


async def test_without_a_floor_images_pass_on_their_texts_class_and_are_noted(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("vendor", "openai", fake_openai.base_url, **SEEING)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="vendor", messages=[{"role": "user", "content": with_image("what is this?")}]
        )
        await running.podium.recorder.flush()
        trace = await running.podium.store.get_trace(raw.headers["x-podium-trace-id"])
    assert trace is not None and "images:unscanned" in trace.policy_actions


async def test_pseudonymised_clearance_does_not_cover_images(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """Pseudonymisation replaces values in text; the image beside them goes as it came."""
    vendor = worker(
        "vendor", "openai", fake_openai.base_url, **profile(["public"], ["confidential"]), **SEEING
    )
    async with (
        gateway([vendor]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        text_only = await client.chat.completions.create(
            model="vendor",
            messages=[{"role": "user", "content": "Is 219-09-9999 a valid SSN?"}],
        )
        assert text_only.choices[0].message.content  # pseudonymised, then sent
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(
                model="vendor",
                messages=[{"role": "user", "content": with_image("Is 219-09-9999 on this card?")}],
            )
    assert len(fake_openai.received) == 1


def test_an_unknown_images_class_is_a_config_error(make_config: Any) -> None:
    with pytest.raises((ConfigError, ValueError), match="images_class"):
        make_config([], policy={"images_class": "secret"})
