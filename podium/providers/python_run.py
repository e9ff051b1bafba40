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

from pydantic import Field

from podium.code_examples import PARSE_ERRORS, reply_code
from podium.errors import ProviderError
from podium.providers.base import ProviderRegistry
from podium.providers.sandboxed import SandboxedWorker, SandboxOptions
from podium.sandbox import run_python
from podium.types import ChatRequest
from podium.workflow import checked_in

ANSWER_CHARS = 2000  # the tail of a longer output: a program should print its answer last


class PythonRunOptions(SandboxOptions):
    timeout_s: float = Field(5.0, gt=0, le=120)  # wall time for one program


def program_in(reply: str) -> str:
    """The code of a model's reply (:func:`podium.code_examples.reply_code`); a bare
    expression is printed."""
    code = reply_code(reply).strip()
    try:
        expression = ast.parse(code, mode="eval").body
    except PARSE_ERRORS:
        return code
    printing = isinstance(expression, ast.Call) and getattr(expression.func, "id", "") == "print"
    return code if printing else f"print({code})"


class PythonRunner(SandboxedWorker):
    does = "runs programs an earlier step wrote"
    options_type = PythonRunOptions

    async def answer(self, request: ChatRequest) -> str:
        """What the program shown in the request prints; empty when it fails."""
        note = request.messages[-1].text() if request.messages else ""
        reply = checked_in(note) if len(request.messages) >= 2 else None
        if reply is None:
            raise ProviderError(
                "invalid_request",
                "this worker only runs a program an earlier step wrote; the request shows none",
                worker=self.worker.name,
            )
        async with self.slots:
            result = await run_python(program_in(reply), seconds=self.options.timeout_s)
        return result.output.strip()[-ANSWER_CHARS:] if result.passed else ""

    async def self_test(self) -> str | None:
        result = await run_python("print(6 * 7)", seconds=self.options.timeout_s)
        return (
            None if result.output.strip() == "42" else result.output.strip()[-200:] or "no output"
        )


def register_providers(providers: ProviderRegistry) -> None:
    providers.register("python", PythonRunner)
