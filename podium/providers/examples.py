"""The ``examples`` checker: a worker that judges a code draft by running it, not by asking a
model.

A cascade's check step shows its worker the request and the draft
(:func:`podium.executor.step_request`). This worker finds the function the request asks for,
runs the draft against the examples in that function's docstring (doctest or prose; see
:mod:`podium.code_examples`) in the sandbox (:mod:`podium.sandbox`), and answers the verdict
the executor reads: ``{"verdict": "accept"}`` when every example passes, otherwise
``{"verdict": "reject", "reason": ...}`` (no examples, a failed example, an error, a
timeout), so the cascade escalates.

It runs code a model wrote, on the gateway's machine, and is off unless configured: a worker
``provider: examples`` with ``role: check`` (docs/routing.md, "Checking code by its examples").
It costs no tokens; price it at zero.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podium import confinement
from podium.code_examples import ExamplesVerdict, check_draft
from podium.config import ConfigError
from podium.errors import ProviderError
from podium.providers.base import ProviderContext, ProviderRegistry, options_problems
from podium.types import ChatRequest, ChatResponse, EventStream, Finish, TextDelta, UsageReport
from podium.workflow import checked_in

log = logging.getLogger("podium.examples")
# checked at start: if the sandbox cannot pass this here, it would reject every draft
KNOWN_GOOD = ('def double(x):\n    """\n    >>> double(2)\n    4\n    """\n', "    return 2 * x\n")


class ExamplesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(10.0, gt=0, le=120)  # wall time for one draft's examples
    concurrency: int = Field(2, ge=1, le=64)  # drafts checked at once; more wait their turn
    # refuse to start where the kernel cannot set every limit (podium.confinement), rather
    # than run drafts under whichever it offers
    require_kernel_limits: bool = False


class ExamplesChecker:
    def __init__(self, context: ProviderContext) -> None:
        self.worker = context.worker
        if self.worker.role != "check":
            raise ConfigError(
                f"worker {self.worker.name!r}: the examples provider only checks drafts; "
                "give the worker role: check"
            )
        try:
            self.options = ExamplesOptions.model_validate(self.worker.options)
        except ValidationError as error:
            raise ConfigError(f"worker {self.worker.name!r}: {options_problems(error)}") from None
        self._slots = asyncio.Semaphore(self.options.concurrency)
        missing = [name for name in confinement.EVERY_LIMIT if name not in confinement.offered()]
        if missing and self.options.require_kernel_limits:
            raise ConfigError(
                f"worker {self.worker.name!r}: require_kernel_limits is set, but this "
                f"machine's kernel does not offer {', '.join(missing)}"
            )
        self.missing_limits = missing

    def warnings(self) -> list[str]:
        if not self.missing_limits:
            return []
        return [
            f"worker {self.worker.name!r} runs drafts without {', '.join(self.missing_limits)}: "
            "this kernel does not offer them (the sandbox's audit hook still applies; "
            "docs/security.md)"
        ]

    async def start(self) -> None:
        for warning in self.warnings():
            log.warning("%s", warning)
        verdict = await check_draft(*KNOWN_GOOD, seconds=self.options.timeout_s)
        if not verdict.accept:
            raise ConfigError(
                f"worker {self.worker.name!r}: the sandbox cannot run code on this machine "
                f"({verdict.reason})"
            )

    async def aclose(self) -> None:
        return None

    async def verdict(self, request: ChatRequest) -> ExamplesVerdict:
        if len(request.messages) < 2 or request.messages[-1].role != "user":
            raise self._not_a_check()
        draft = checked_in(request.messages[-1].text())
        prompt = ChatRequest(model=request.model, messages=request.messages[:-1]).last_user_text()
        if draft is None or not prompt:
            raise self._not_a_check()
        async with self._slots:
            return await check_draft(prompt, draft, seconds=self.options.timeout_s)

    def _not_a_check(self) -> ProviderError:
        return ProviderError(
            "invalid_request",
            "this worker only checks a cascade's draft; the request shows none",
            worker=self.worker.name,
        )

    def _response(self, verdict: ExamplesVerdict) -> ChatResponse:
        body = {"verdict": "accept" if verdict.accept else "reject", "reason": verdict.reason}
        return ChatResponse(
            id=f"check-{uuid.uuid4().hex[:24]}",
            model=self.worker.name,  # the name callers see, as every provider answers
            text=json.dumps(body),
            created=int(time.time()),
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return self._response(await self.verdict(request))

    async def stream(self, request: ChatRequest) -> EventStream:
        response = self._response(await self.verdict(request))
        yield TextDelta(response.text)
        yield Finish("stop")
        yield UsageReport(response.usage)


def register_providers(providers: ProviderRegistry) -> None:
    providers.register("examples", ExamplesChecker)
