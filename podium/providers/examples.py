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

import json

from pydantic import Field

from podium.code_examples import check_draft
from podium.errors import ProviderError
from podium.providers.base import ProviderRegistry
from podium.providers.sandboxed import SandboxedWorker, SandboxOptions
from podium.types import ChatRequest
from podium.workflow import checked_in

# checked at start: if the sandbox cannot pass this here, it would reject every draft
KNOWN_GOOD = ('def double(x):\n    """\n    >>> double(2)\n    4\n    """\n', "    return 2 * x\n")


class ExamplesOptions(SandboxOptions):
    timeout_s: float = Field(10.0, gt=0, le=120)  # wall time for one draft's examples


class ExamplesChecker(SandboxedWorker):
    does = "checks drafts"
    options_type = ExamplesOptions

    async def answer(self, request: ChatRequest) -> str:
        if len(request.messages) < 2 or request.messages[-1].role != "user":
            raise self._not_a_check()
        draft = checked_in(request.messages[-1].text())
        prompt = ChatRequest(model=request.model, messages=request.messages[:-1]).last_user_text()
        if draft is None or not prompt:
            raise self._not_a_check()
        async with self.slots:
            verdict = await check_draft(prompt, draft, seconds=self.options.timeout_s)
        return json.dumps(
            {"verdict": "accept" if verdict.accept else "reject", "reason": verdict.reason}
        )

    async def self_test(self) -> str | None:
        verdict = await check_draft(*KNOWN_GOOD, seconds=self.options.timeout_s)
        return None if verdict.accept else verdict.reason

    def _not_a_check(self) -> ProviderError:
        return ProviderError(
            "invalid_request",
            "this worker only checks a cascade's draft; the request shows none",
            worker=self.worker.name,
        )


def register_providers(providers: ProviderRegistry) -> None:
    providers.register("examples", ExamplesChecker)
