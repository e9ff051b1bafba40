"""Ordered rules from ``podium.yaml``: the first rule whose conditions all hold decides.

Each rule is compiled once into a tuple of small predicates (cheapest first) and a resolved
target, so a decision costs a few dictionary look-ups and, when a rule reads the prompt, one
regular-expression search over at most :data:`SCAN_CHARS` characters of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from podium.code_examples import find_examples
from podium.routing.base import Decision, RouteContext
from podium.routing.config import RoutingConfigError, RuleConfig, RuleMatch
from podium.routing.registry import RouterParts, RouterRegistry
from podium.routing.targets import ResolvedTarget, Skip
from podium.types import ChatRequest, TextPart

# Keywords and patterns read the head and the tail of a long text, not all of it: a 1 MB prompt
# must not cost more than the router's budget.
SCAN_CHARS = 16_384
TAIL_CHARS = 4_096


def _clip(text: str) -> str:
    if len(text) <= SCAN_CHARS:
        return text
    return text[: SCAN_CHARS - TAIL_CHARS] + "\n" + text[-TAIL_CHARS:]


class RequestView:
    """Facts about one request, each computed at most once and only if some rule asks."""

    __slots__ = ("_all", "_examples", "_last", "_tokens", "request")

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self._last: str | None = None
        self._all: str | None = None
        self._tokens: int | None = None
        self._examples: bool | None = None

    def last_user(self) -> str:
        if self._last is None:
            self._last = _clip(self.request.last_user_text())
        return self._last

    def all_text(self) -> str:
        if self._all is None:
            self._all = _clip(self.request.prompt_text())
        return self._all

    def has_code_examples(self) -> bool:
        """Whether the last user message asks for a function with runnable docstring examples
        (parsed once, and only when a rule gets this far)."""
        if self._examples is None:
            self._examples = find_examples(self.last_user()) is not None
        return self._examples

    def tokens(self) -> int:
        """Estimated prompt tokens (about four characters a token), without joining texts."""
        if self._tokens is None:
            chars = 0
            for message in self.request.messages:
                for part in message.content:
                    if isinstance(part, TextPart):
                        chars += len(part.text)
            self._tokens = (chars + 3) // 4
        return self._tokens


Check = Callable[[RequestView, RouteContext], bool]


def _keyword_pattern(words: list[str]) -> re.Pattern[str]:
    alternatives = []
    for word in sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True):
        escaped = re.escape(word)
        # Word boundaries only where the keyword itself starts or ends with an ASCII letter or
        # digit: CJK text has no spaces, so a boundary there would never match.
        if word[0].isascii() and word[0].isalnum():
            escaped = r"(?<!\w)" + escaped
        if word[-1].isascii() and word[-1].isalnum():
            escaped += r"(?!\w)"
        alternatives.append(escaped)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def compile_match(match: RuleMatch, owner: str) -> tuple[tuple[Check, ...], str]:
    """The rule's predicates, cheapest first, and a readable summary of its conditions."""
    checks: list[Check] = []
    said: list[str] = []
    if match.model is not None:
        models = frozenset(match.model)
        checks.append(lambda view, _: view.request.model in models)
        said.append(f"model in [{', '.join(match.model)}]")
    if match.contract is not None:
        contracts = frozenset(match.contract)
        checks.append(lambda _, context: context.contract in contracts)
        said.append(f"contract in [{', '.join(match.contract)}]")
    if match.data_class is not None:
        classes = frozenset(match.data_class)
        checks.append(lambda _, context: context.data_class in classes)
        said.append(f"data class in [{', '.join(match.data_class)}]")
    if match.tools is not None:
        wanted_tools = match.tools
        checks.append(lambda view, _: bool(view.request.tools) is wanted_tools)
        said.append("tools offered" if wanted_tools else "no tools")
    if match.images is not None:
        wanted_images = match.images
        checks.append(lambda view, _: view.request.has_images() is wanted_images)
        said.append("images attached" if wanted_images else "no images")
    if match.caller:
        expected = dict(match.caller)

        def caller_matches(_: RequestView, context: RouteContext) -> bool:
            caller = context.caller
            for key, value in expected.items():
                if key == "key_id":
                    actual: str | None = caller.key_id
                elif key == "owner":
                    actual = caller.owner
                else:
                    actual = caller.metadata.get(key)
                if actual != value:
                    return False
            return True

        checks.append(caller_matches)
        said.append("caller " + ", ".join(f"{k}={v}" for k, v in expected.items()))
    if match.headers:
        patterns: list[tuple[str, re.Pattern[str] | None]] = []
        for header, pattern in match.headers.items():
            patterns.append((header.lower(), None if pattern == "*" else _regex(pattern, owner)))

        def headers_match(_: RequestView, context: RouteContext) -> bool:
            for header, compiled in patterns:
                value = context.headers.get(header)
                if value is None or (compiled is not None and compiled.search(value) is None):
                    return False
            return True

        checks.append(headers_match)
        said.append("headers " + ", ".join(match.headers))
    if match.min_tokens is not None or match.max_tokens is not None:
        low = match.min_tokens or 0
        high = match.max_tokens if match.max_tokens is not None else 1 << 62
        if low > high:
            raise RoutingConfigError(f"{owner}: min_tokens {low} is above max_tokens {high}")
        checks.append(lambda view, _: low <= view.tokens() <= high)
        said.append(
            f"~{low}..{match.max_tokens} tokens"
            if match.max_tokens is not None
            else f">= {low} tokens"
        )
    text_of: Callable[[RequestView], str] = (
        RequestView.last_user if match.text == "last_user" else RequestView.all_text
    )
    if match.keywords:
        if not any(word.strip() for word in match.keywords):
            raise RoutingConfigError(f"{owner}: keywords are all empty")
        keywords = _keyword_pattern(match.keywords)
        checks.append(lambda view, _: keywords.search(text_of(view)) is not None)
        shown = ", ".join(match.keywords[:5]) + (", ..." if len(match.keywords) > 5 else "")
        said.append(f"keywords [{shown}]")
    if match.regex:
        compiled_all = [_regex(pattern, owner) for pattern in match.regex]

        def any_regex(view: RequestView, _: RouteContext) -> bool:
            text = text_of(view)
            return any(pattern.search(text) is not None for pattern in compiled_all)

        checks.append(any_regex)
        said.append(f"pattern [{', '.join(match.regex)}]")
    if match.code_examples is not None:
        wanted_examples = match.code_examples
        checks.append(lambda view, _: view.has_code_examples() is wanted_examples)
        said.append("code with examples" if wanted_examples else "no code examples")
    return tuple(checks), "; ".join(said) or "always"


def _regex(pattern: str, owner: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise RoutingConfigError(
            f"{owner}: regular expression {pattern!r} does not compile: {error}"
        ) from None


class CompiledRule:
    __slots__ = ("checks", "name", "reason", "target")

    def __init__(self, rule: RuleConfig, parts: RouterParts) -> None:
        owner = f"rule {rule.name!r}"
        self.name = rule.name
        self.checks, summary = compile_match(rule.match, owner)
        self.target = ResolvedTarget(rule, parts, owner)
        self.reason = (
            rule.reason or f"rule {rule.name!r} matched ({summary}) -> {self.target.label}"
        )

    def matches(self, view: RequestView, context: RouteContext) -> bool:
        for check in self.checks:  # noqa: SIM110 (a plain loop is faster than all() here)
            if not check(view, context):
                return False
        return True


class RulesRouter:
    name = "rules"

    def __init__(self, rules: list[CompiledRule]) -> None:
        self.rules = rules
        # No rules: no model it decides for (see Router). Rules may match any model.
        self.decides_for: frozenset[str] | None = None if rules else frozenset()

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        if not self.rules:
            return None
        view = RequestView(request)
        skipped: list[str] = []
        for rule in self.rules:
            if not rule.matches(view, context):
                continue
            outcome = await rule.target.decide(
                request, context, router=self.name, rule=rule.name, reason=rule.reason
            )
            if isinstance(outcome, Skip):
                skipped.append(f"rule {rule.name!r}: {outcome.reason}")
                continue
            if outcome is None:
                continue
            if skipped:
                outcome.reason = f"{outcome.reason} (passed over: {'; '.join(skipped)})"
            return outcome
        return None


def build_rules(section: Any, parts: RouterParts) -> RulesRouter:
    rules: list[RuleConfig] = section if isinstance(section, list) else parts.routing.rules
    if isinstance(section, dict):  # a second rules router declared under routing.routers
        try:
            rules = [RuleConfig.model_validate(rule) for rule in section.get("rules", [])]
        except ValueError as error:
            raise RoutingConfigError(f"rules: {error}") from None
    return RulesRouter([CompiledRule(rule, parts) for rule in rules])


def register_routers(registry: RouterRegistry) -> None:
    registry.register("rules", build_rules)
