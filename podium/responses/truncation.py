"""The Responses API's ``truncation: "auto"``: a conversation longer than the chosen worker's
context window loses its oldest items until it fits, instead of failing upstream.

A hook at ``decided``: once routing has chosen the workers, the conversation is cut to the
smallest context window among the workflow's answering steps, less the room the answer needs.
System messages and the newest user message always stay; the cut falls on whole turns, so no
tool result is left without the call it answers and the conversation still opens with a user
message. Token counts are Podium's estimate (about four characters a token), so the cut aims
below the window by a margin.
"""

from __future__ import annotations

from podium.api.responses_request import ResponsesRequest
from podium.context import RequestContext
from podium.hooks import Hook
from podium.routing.base import Decision
from podium.types import ChatRequest, Message
from podium.workers import WorkerPool, estimate_message_tokens, estimate_tool_tokens
from podium.workflow import TOOL_ROLES

DEFAULT_ANSWER_TOKENS = 1024  # room kept for the answer when the request sets no limit
MARGIN = 0.9  # the estimate may undercount a tokenizer's tokens; aim this far below the window


def truncate(messages: list[Message], budget: int) -> tuple[list[Message], int]:
    """``messages`` with the oldest non-system ones dropped until their estimate is within
    ``budget``; and how many were dropped."""
    costs = [estimate_message_tokens(message) for message in messages]
    total = sum(costs)
    if total <= budget:
        return messages, 0
    conversation = [i for i, message in enumerate(messages) if message.role != "system"]
    last_user = max((i for i in conversation if messages[i].role == "user"), default=None)
    dropped: set[int] = set()
    for index in conversation:
        if total <= budget or index == last_user:
            break
        dropped.add(index)
        total -= costs[index]
    # Whole turns: what is left starts at a user message, so no tool result or answer is left
    # without what it answers.
    for index in conversation:
        if index in dropped:
            continue
        if index == last_user or messages[index].role == "user":
            break
        dropped.add(index)
    return [m for i, m in enumerate(messages) if i not in dropped], len(dropped)


class TruncationHook(Hook):
    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    async def decided(
        self, request: ChatRequest, decision: Decision, context: RequestContext
    ) -> None:
        if not isinstance(request, ResponsesRequest) or not request.truncate:
            return
        windows = []
        for step in decision.workflow.steps:
            worker = self.pool.get(step.worker)
            if worker is not None and step.role not in TOOL_ROLES:
                windows.append(worker.config.context_window)
        if not windows:
            return
        answer = request.max_tokens or DEFAULT_ANSWER_TOKENS
        budget = int(min(windows) * MARGIN) - answer
        budget -= estimate_tool_tokens(request.tools)
        request.messages, dropped = truncate(request.messages, budget)
        if dropped:
            context.policy_actions.append(f"truncated:{dropped}")
