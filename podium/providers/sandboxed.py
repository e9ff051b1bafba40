"""What the workers that run model-written code share: the ``examples`` checker and the
``python`` runner answer a step by running code in the sandbox (:mod:`podium.sandbox`), not by
calling a model.

Such a worker must have ``role: check`` (no router or caller can ask it for an answer), takes
``timeout_s``, ``concurrency`` and ``require_kernel_limits`` options, warns when the kernel
cannot set the sandbox's limits (or, with ``require_kernel_limits``, refuses to be built), and
at start proves on a known-good case that the sandbox runs code on this machine, so that a
broken sandbox stops the gateway instead of failing every request. It costs no tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podium import confinement
from podium.config import ConfigError
from podium.providers.base import ProviderContext, options_problems
from podium.types import ChatRequest, ChatResponse, EventStream, Finish, TextDelta, UsageReport

log = logging.getLogger("podium.sandboxed")


class SandboxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(10.0, gt=0, le=120)  # wall time for one run
    concurrency: int = Field(2, ge=1, le=64)  # runs at once; more wait their turn
    # refuse to be built where the kernel cannot set every limit (podium.confinement),
    # rather than run code under whichever it offers
    require_kernel_limits: bool = False


class SandboxedWorker:
    """Subclasses say what they do (``does``, for messages), which options they take
    (``options_type``), how they answer a step (:meth:`answer`) and how they prove the sandbox
    works (:meth:`self_test`)."""

    does = "runs code"
    options_type: type[SandboxOptions] = SandboxOptions

    def __init__(self, context: ProviderContext) -> None:
        self.worker = context.worker
        provider = self.worker.provider
        if self.worker.role != "check":
            raise ConfigError(
                f"worker {self.worker.name!r}: the {provider} provider only {self.does}; "
                "give the worker role: check"
            )
        try:
            self.options = self.options_type.model_validate(self.worker.options)
        except ValidationError as error:
            raise ConfigError(f"worker {self.worker.name!r}: {options_problems(error)}") from None
        self.slots = asyncio.Semaphore(self.options.concurrency)
        offered = confinement.offered()
        missing = [name for name in confinement.EVERY_LIMIT if name not in offered]
        if missing and self.options.require_kernel_limits:
            raise ConfigError(
                f"worker {self.worker.name!r}: require_kernel_limits is set, but this "
                f"machine's kernel does not offer {', '.join(missing)}"
            )
        self.missing_limits = missing

    async def answer(self, request: ChatRequest) -> str:
        raise NotImplementedError

    async def self_test(self) -> str | None:
        """None when a known-good case passes in the sandbox here, else why it did not."""
        raise NotImplementedError

    def warnings(self) -> list[str]:
        if not self.missing_limits:
            return []
        return [
            f"worker {self.worker.name!r} runs model-written code without "
            f"{', '.join(self.missing_limits)}: this kernel does not offer them (the sandbox's "
            "audit hook still applies; docs/security.md)"
        ]

    async def start(self) -> None:
        for warning in self.warnings():
            log.warning("%s", warning)
        failure = await self.self_test()
        if failure is not None:
            raise ConfigError(
                f"worker {self.worker.name!r}: the sandbox cannot run code on this machine "
                f"({failure})"
            )

    async def aclose(self) -> None:
        return None

    def _response(self, text: str) -> ChatResponse:
        return ChatResponse(
            id=f"run-{uuid.uuid4().hex[:24]}",
            model=self.worker.name,  # the name callers see, as every provider answers
            text=text,
            created=int(time.time()),
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return self._response(await self.answer(request))

    async def stream(self, request: ChatRequest) -> EventStream:
        response = self._response(await self.answer(request))
        yield TextDelta(response.text)
        yield Finish("stop")
        yield UsageReport(response.usage)
