"""The check every ingress makes of a request's ``tool_choice`` against its ``tools``: a choice
no worker could honour is the caller's mistake, said before anything is sent, as the vendors'
APIs say it (they answer 400), rather than passed on for a worker to ignore or to call a tool
the caller never declared."""

from __future__ import annotations

from podium.errors import PodiumError
from podium.types import Tool, ToolChoice


def check_tool_choice(choice: ToolChoice | None, tools: list[Tool]) -> None:
    """``auto`` and ``none`` need no tools; ``required`` needs some, and a named tool must be
    one of them."""
    if choice is None or choice.mode in ("auto", "none"):
        return
    if not tools:
        raise PodiumError(
            "invalid_request",
            f"Invalid value for 'tool_choice': {_said(choice)} needs 'tools', and none are given.",
            param="tool_choice",
        )
    if choice.mode == "tool" and all(tool.name != choice.name for tool in tools):
        declared = ", ".join(repr(tool.name) for tool in tools)
        raise PodiumError(
            "invalid_request",
            f"Invalid value for 'tool_choice': the tool {choice.name!r} is not among 'tools' "
            f"({declared}).",
            param="tool_choice",
        )


def _said(choice: ToolChoice) -> str:
    return f"the tool {choice.name!r}" if choice.mode == "tool" else repr(choice.mode)
