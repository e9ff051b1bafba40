"""The optional judge: a worker that grades a sample of answers 1-5, after the response has
gone, off the hot path. It needs the question and the answer, so it only runs when trace
content capture is on. Its grade is stored as a ``judge`` signal (score = (grade - 1) / 4).

Each grading call is a request of Podium's own: it is recorded as a trace (ingress ``judge``,
caller ``podium:judge``, its reason naming the graded trace) through the gateway, so its tokens
and cost reach the store, the dashboard's rollup, ``/metrics`` and cost reports like any other
request's. It passes no key's admission, so no application's budget is charged for it.

The judge sees only what its worker is cleared for, by the data policy's own rule
(:meth:`podium.policy.classify.DataClasses.cleared`): a trace whose data class the judge worker
is not cleared for, plainly, is not sent (counted in ``not_cleared``). Plain clearance, never
"cleared once pseudonymised": the captured question is the pseudonymised text the worker saw,
but the captured answer has the original values put back, so the judge would see them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from podium.context import Caller, RequestContext
from podium.engine import Engine
from podium.errors import PodiumError
from podium.executor import Run
from podium.hooks import Hook
from podium.observe.feedback import Feedback
from podium.observe.settings import JudgeConfig
from podium.routing.base import Decision
from podium.store.traces import TraceRecord
from podium.types import ChatRequest, ChatResponse, Message, TextPart
from podium.workflow import Workflow

if TYPE_CHECKING:
    from podium.gateway import Gateway
    from podium.policy.classify import DataClasses

log = logging.getLogger("podium.judge")

PROMPT = (
    "You grade answers. Read the question and the answer, then reply with one digit from 1 "
    "(wrong or useless) to 5 (correct, complete and clear), and nothing else.\n\n"
    "[Question]\n{prompt}\n\n[Answer]\n{answer}"
)
MAX_CHARS = 8000  # of the question and of the answer each, sent to the judge
_GRADE = re.compile(r"[1-5]")
# Who the judge's own traces say called: no key id looks like this (keys are 10 hex digits),
# so spend by caller shows the judge apart from every application.
INGRESS = "judge"
KEY_ID = "podium:judge"
OWNER = "podium"


def parse_grade(text: str) -> int | None:
    found = _GRADE.search(text)
    return int(found.group()) if found else None


class JudgeHook(Hook):
    def __init__(
        self,
        engine: Engine,
        gateway: Gateway,
        feedback: Feedback,
        config: JudgeConfig,
        *,
        classes: Callable[[], DataClasses | None],
        sample: Callable[[], float] = random.random,
    ) -> None:
        """``classes`` gives the data policy's classes, or None when the policy is off (and
        the gateway clears every worker for everything); asked when needed, as the policy
        registers after the observability plugin."""
        assert config.worker is not None
        self.engine = engine
        self.gateway = gateway
        self.feedback = feedback
        self.worker = config.worker
        self.config = config
        self._classes = classes
        self._sample = sample
        self._tasks: set[asyncio.Task[int | None]] = set()
        self.judged = 0
        self.skipped = 0
        self.not_cleared = 0  # sampled, but the judge may not see their data class

    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        if (
            trace.status != "ok"
            or not trace.prompt
            or not trace.answer
            or trace.worker == self.worker
            or self._sample() >= self.config.sample_rate
        ):
            return
        if not self.cleared(trace):
            self.not_cleared += 1
            # Never the content: the trace id and its class say enough.
            log.debug(
                "judge %s is not cleared for data class %s: trace %s not judged",
                self.worker,
                trace.data_class,
                trace.trace_id,
            )
            return
        if len(self._tasks) >= self.config.max_pending:
            self.skipped += 1  # the judge is a sample: dropping one under load loses nothing
            return
        task = asyncio.get_running_loop().create_task(self.judge(trace))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cleared(self, trace: TraceRecord) -> bool:
        """Whether the judge worker may see this trace's question and answer."""
        classes = self._classes()
        if classes is None:
            return True  # no data policy: the gateway clears no worker by class either
        judge = self.gateway.pool.get(self.worker)
        if judge is None:
            return False  # not in the pool (removed): no profile to clear it by
        # Plainly cleared: the captured answer carries the values pseudonymisation hid.
        return classes.cleared(judge.config, trace.data_class, pseudonymised=False)

    async def judge(self, trace: TraceRecord) -> int | None:
        prompt = PROMPT.format(
            prompt=(trace.prompt or "")[:MAX_CHARS], answer=(trace.answer or "")[:MAX_CHARS]
        )
        request = ChatRequest(
            model=self.worker,
            messages=[Message(role="user", content=[TextPart(prompt)])],
            max_tokens=4,
            temperature=0.0,
        )
        response = await self._call(request, trace)
        if response is None:
            return None
        grade = parse_grade(response.text)
        if grade is None:
            log.warning("judge %s gave no grade for trace %s", self.worker, trace.trace_id)
            return None
        self.feedback.record(
            trace.trace_id, "judge", grade, source="judge", comment=self.worker, scale=(1, 5)
        )
        self.judged += 1
        return grade

    async def _call(self, request: ChatRequest, judged: TraceRecord) -> ChatResponse | None:
        """The judge's answer, or None if the call failed; traced either way."""
        context = RequestContext(
            ingress=INGRESS,
            headers={},
            caller=Caller(key_id=KEY_ID, owner=OWNER, scopes=[]),
            data_class=judged.data_class,  # what the judge was shown is the judged request's
        )
        decision = Decision(
            Workflow.single(self.worker), router="judge", reason=f"grades trace {judged.trace_id}"
        )
        run = Run()
        try:
            _, response = await self.engine.complete(
                request, [self.worker], run.attempts, role="judge", priority="background"
            )
        except Exception as error:
            log.warning("judge %s failed on trace %s: %s", self.worker, judged.trace_id, error)
            failure = (
                error
                if isinstance(error, PodiumError)
                # Not a message of its own: an unexpected error's text may carry anything.
                else PodiumError("api_error", f"the judge's call failed: {type(error).__name__}")
            )
            self.gateway.record(
                request, decision, run, context, status=failure.status, error=failure
            )
            return None
        self.gateway.record(request, decision, run, context, status=200, response=response)
        return response

    async def close(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
