"""The ``python`` runner: a worker that answers with what a program prints, not with a model.

The ``program`` template (:mod:`podium.routing.templates`) has a model write Python that
computes the answer to the request; its run step shows the program to this worker, which runs
it in the sandbox (:mod:`podium.sandbox`) and answers with the program's output. A program that
fails, runs out of time or prints nothing gets an empty answer, which the executor does not
accept, so the template's last step answers the request directly instead.

Like the ``examples`` checker it runs code a model wrote on the gateway's machine and costs no
tokens: it is off unless a worker ``provider: python`` with ``role: check`` is configured
(docs/routing.md, "Answering by a program").
"""

from __future__ import annotations

import ast
import asyncio
import time
import uuid

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podium.code_examples import code_blocks
from podium.config import ConfigError
from podium.errors import ProviderError
from podium.providers.base import ProviderContext, ProviderRegistry, options_problems
from podium.sandbox import run_python
from podium.types import ChatRequest, ChatResponse, EventStream, Finish, TextDelta, UsageReport
from podium.workflow import checked_in

ANSWER_CHARS = 2000  # the tail of a longer output: a program should print its answer last


class PythonRunOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(5.0, gt=0, le=120)  # wall time for one program
    concurrency: int = Field(2, ge=1, le=64)  # programs run at once; more wait their turn


def program_in(reply: str) -> str:
    """The code of a model's reply: its longest fenced block, else the whole reply; a bare
    expression is printed."""
    blocks = code_blocks(reply)
    code = (max(blocks, key=len) if blocks else reply).strip()
    try:
        expression = ast.parse(code, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return code
    printing = isinstance(expression, ast.Call) and getattr(expression.func, "id", "") == "print"
    return code if printing else f"print({code})"


class PythonRunner:
    def __init__(self, context: ProviderContext) -> None:
        self.worker = context.worker
        if self.worker.role != "check":
            raise ConfigError(
                f"worker {self.worker.name!r}: the python provider only runs programs an "
                "earlier step wrote; give the worker role: check"
            )
        try:
            self.options = PythonRunOptions.model_validate(self.worker.options)
        except ValidationError as error:
            raise ConfigError(f"worker {self.worker.name!r}: {options_problems(error)}") from None
        self._slots = asyncio.Semaphore(self.options.concurrency)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def output(self, request: ChatRequest) -> str:
        """What the program shown in the request prints; empty when it fails."""
        note = request.messages[-1].text() if request.messages else ""
        reply = checked_in(note) if len(request.messages) >= 2 else None
        if reply is None:
            raise ProviderError(
                "invalid_request",
                "this worker only runs a program an earlier step wrote; the request shows none",
                worker=self.worker.name,
            )
        async with self._slots:
            result = await run_python(program_in(reply), seconds=self.options.timeout_s)
        return result.output.strip()[-ANSWER_CHARS:] if result.passed else ""

    def _response(self, text: str) -> ChatResponse:
        return ChatResponse(
            id=f"run-{uuid.uuid4().hex[:24]}",
            model=self.worker.name,  # the name callers see, as every provider answers
            text=text,
            created=int(time.time()),
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return self._response(await self.output(request))

    async def stream(self, request: ChatRequest) -> EventStream:
        response = self._response(await self.output(request))
        yield TextDelta(response.text)
        yield Finish("stop")
        yield UsageReport(response.usage)


def register_providers(providers: ProviderRegistry) -> None:
    providers.register("python", PythonRunner)
