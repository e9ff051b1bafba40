"""Shadow runs: a new version of a contract answers the same live input off the hot path, its
result recorded (trace, contract_calls row with agreement to the live output) but never
returned, until ``podium contracts promote`` makes it current."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from podium.context import new_trace_id
from podium.contracts.evaluate import evaluate, similarity
from podium.contracts.runner import CallEvent, ContractRunner
from podium.contracts.settings import ShadowSettings
from podium.contracts.stats import CallLog, CallRow
from podium.errors import PodiumError

log = logging.getLogger("podium.contracts")
SHADOW_INGRESS = "contract-shadow"


class ShadowRunner:
    def __init__(
        self,
        runner: ContractRunner,
        calls: CallLog,
        settings: ShadowSettings,
        *,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.runner = runner
        self.calls = calls
        self.settings = settings
        self._sample = sample
        self._tasks: set[asyncio.Task[None]] = set()
        self.started = 0
        self.skipped = 0

    def listen(self, event: CallEvent) -> None:
        if event.mode != "live":
            return
        shadow = self.runner.contracts.shadow_of(event.contract.name)
        if shadow is None or shadow.version == event.contract.version:
            return
        if self._sample() >= self.settings.rate:
            return
        if len(self._tasks) >= self.settings.max_in_flight:
            self.skipped += 1  # shadows never queue up behind live traffic
            return
        self.started += 1
        task = asyncio.get_running_loop().create_task(self._run(event, shadow.version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, event: CallEvent, version: str) -> None:
        live = event.result
        row = CallRow(
            trace_id=new_trace_id(),
            contract=event.contract.name,
            version=version,
            mode="shadow",
            attempts=0,
            shadow_of=event.context.trace_id,
        )
        try:
            result = await self.runner.call(
                event.contract.name,
                event.input,
                version=version,
                headers=event.context.headers,
                ingress=SHADOW_INGRESS,
                mode="shadow",
                notify=False,
                trace_id=row.trace_id,
            )
        except PodiumError as error:
            row.error_code = error.code
            self.calls.write(row)
            return
        except Exception:
            log.exception("shadow run of %s@%s failed", event.contract.name, version)
            return
        row.attempts = result.attempts
        if live is not None:
            spec = event.contract.evaluator
            if spec.needs_reference:
                verdict = await evaluate(event.contract, result.output, live.output, evaluator=spec)
                row.agrees = verdict.score
            else:
                row.agrees, _ = similarity(live.output, result.output)
        self.calls.write(row)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
