"""End to end: the real embedded SmolLM2 worker through the official openai SDK, and
``podium serve`` as a real process that answers and shuts down cleanly on a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from podium.app import create_podium
from podium.config import parse_config
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.server import serve

pytestmark = pytest.mark.slow

PODIUM = Path(sys.executable).with_name("podium")


async def test_smollm2_answers_through_the_openai_sdk(tmp_path: Path) -> None:
    config = parse_config({"data_dir": str(tmp_path / "data")})  # no workers: the embedded pool
    assert [worker.name for worker in config.workers] == ["smollm2-135m", "minilm-static"]
    podium = create_podium(config)
    async with (
        serve(podium.app) as url,
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="podium/auto",
            messages=[{"role": "user", "content": "Say hello in one short sentence."}],
            max_tokens=24,
            temperature=0,
        )
        completion = raw.parse()
        assert completion.choices[0].message.content
        assert completion.usage is not None and completion.usage.completion_tokens > 0
        assert raw.headers["x-podium-worker"] == "smollm2-135m"

        stream = await client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Count from one to five."}],
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
        assert len(pieces) > 1 and "".join(pieces).strip()  # real incremental chunks
        assert usage is not None and usage.completion_tokens > 0

        models = [model.id async for model in client.models.list()]
        assert {"podium/auto", "smollm2-135m", "minilm-static"} <= set(models)

        # The embedded embedding model answers too, with the OpenAI SDK's base64 vectors.
        vectors = await client.embeddings.create(
            model="minilm-static", input=["a cat sat on the mat", "a kitten sat on a rug"]
        )
        first, second = (row.embedding for row in vectors.data)
        assert len(first) == 256 and vectors.usage.prompt_tokens > 0
        assert sum(a * a for a in first) == pytest.approx(1.0, abs=1e-4)
        assert sum(a * b for a, b in zip(first, second, strict=True)) > 0.5  # alike texts


async def test_smollm2_reads_the_text_of_a_pdf(tmp_path: Path) -> None:
    """The embedded model reads text only: a PDF's text reaches it, and the answer uses it."""
    from podium.testing.pdf import pdf_base64

    podium = create_podium(parse_config({"data_dir": str(tmp_path / "data")}))
    pdf = pdf_base64(["The secret word is BANANA."])
    async with (
        serve(podium.app) as url,
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        completion = await client.chat.completions.create(
            model="smollm2-135m",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {
                                "filename": "note.pdf",
                                "file_data": f"data:application/pdf;base64,{pdf}",
                            },
                        },
                        {"type": "text", "text": "Repeat the secret word from the note."},
                    ],
                }
            ],
            max_tokens=16,
            temperature=0,
        )
    assert completion.usage is not None and completion.usage.prompt_tokens > 20
    assert "BANANA" in (completion.choices[0].message.content or "").upper()


# -- podium serve as a process -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_ready(process: asyncio.subprocess.Process, url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if process.returncode is not None:
                output = await process.stdout.read() if process.stdout else b""
                raise AssertionError(f"podium serve exited: {output.decode()[-2000:]}")
            try:
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("podium serve did not become ready")


async def start(args: list[str], cwd: Path, **env: str) -> asyncio.subprocess.Process:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    environ.update(env)
    return await asyncio.create_subprocess_exec(
        str(PODIUM),
        "serve",
        *args,
        cwd=cwd,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as upstream:
        yield upstream  # type: ignore[misc]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
async def test_podium_serve_answers_then_stops_cleanly(
    tmp_path: Path, fake: FakeOpenAI, stop: signal.Signals
) -> None:
    port = free_port()
    config = tmp_path / "podium.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "workers:\n"
        f"  - {{name: alpha, provider: openai, model: m, base_url: '{fake.base_url}',\n"
        "     price: {input: 1, output: 2}}\n"
        "store: {flush_interval: 3600}\n"  # rows reach the file only through the shutdown flush
    )
    process = await start(["--config", str(config), "--port", str(port)], tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(process, url)
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"{url}/v1/chat/completions",
                json={"model": "alpha", "messages": [{"role": "user", "content": "hi"}]},
            )
            streamed = await client.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": "alpha",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": True,
                },
            )
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"] == "fake answer to: hi"
        assert answer.headers["x-podium-worker"] == "alpha"
        assert streamed.text.rstrip().endswith("data: [DONE]")
    finally:
        if process.returncode is None:
            process.send_signal(stop)
        output = await asyncio.wait_for(process.communicate(), timeout=60)
    log = output[0].decode()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says how the
    # process ended (service managers count that as a clean stop).
    assert process.returncode in (0, -stop), log
    assert "Application shutdown complete" in log and "Traceback" not in log
    with sqlite3.connect(tmp_path / "data" / "podium.db") as db:
        assert db.execute("SELECT COUNT(*) FROM traces").fetchone()[0] == 2


async def test_podium_serve_on_embedded_defaults(tmp_path: Path) -> None:
    """What ``make serve`` does on a fresh machine: no config, a real model, no keys."""
    port = free_port()
    process = await start(["--port", str(port)], tmp_path, PODIUM_DATA_DIR=str(tmp_path / "d"))
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(process, url)
        async with httpx.AsyncClient(timeout=120) as client:
            answer = await client.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": "podium/auto",
                    "messages": [{"role": "user", "content": "Say hello"}],
                    "max_tokens": 16,
                },
            )
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
        assert answer.headers["x-podium-worker"] == "smollm2-135m"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        output = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output[0].decode()[-2000:]
