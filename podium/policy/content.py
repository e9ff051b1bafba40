"""The content policy as a plugin: data classes and clearance, PII pseudonymisation, the
injection screen and the cost guard, registered as gateway hooks after authentication.

Every decision that refuses, redacts or reroutes a request is written to the audit trail
(when the gateway has one) and to ``context.policy_actions``, which lands in the trace.
Neither ever carries a detected value or prompt text.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from podium.config import WorkerConfig
from podium.context import RequestContext
from podium.documents import readable
from podium.errors import PodiumError
from podium.hooks import Hook
from podium.policy.ceiling import REROUTED, CostGuardHook, rerouted_for_injection
from podium.policy.classify import DataClasses
from podium.policy.content_settings import ContentPolicySettings, InjectionAction
from podium.policy.detect import PiiDetector
from podium.policy.findings import Finding
from podium.policy.guard import InjectionScreen
from podium.policy.memo import TextMemo
from podium.policy.redact import (
    Vault,
    message_findings,
    pseudonymise_request,
    restore_events,
    restore_response,
    settings_texts,
)
from podium.routing.fit import unreadable
from podium.types import ChatRequest, ChatResponse, EventStream
from podium.workers import PoolAnswers, WorkerPool

if TYPE_CHECKING:
    from podium.app import Podium

INJECTION_ACTIONS: tuple[InjectionAction, ...] = ("off", "flag", "block", "reroute")
_UNTRUSTED_ROLES = ("user", "tool")  # what the injection screen reads


class Audit(Protocol):
    def record(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> None: ...


def note(
    context: RequestContext,
    audit: Audit | None,
    action: str,
    entry: str,
    details: dict[str, Any],
) -> None:
    """Record a policy decision in the trace and, for refusals, redactions and reroutes, in
    the audit trail."""
    context.policy_actions.append(entry)
    if audit is not None and action:
        audit.record(f"key:{context.caller.key_id}", action, context.trace_id, details)


class DataPolicyHook(Hook):
    """Classify (declared and detected), pseudonymise where a worker needs it, filter the
    workers by clearance, restore the values in the answer."""

    def __init__(
        self,
        settings: ContentPolicySettings,
        pool: WorkerPool,
        *,
        detector: PiiDetector | None = None,
        audit: Audit | None = None,
    ) -> None:
        self.settings = settings
        self.classes = DataClasses(settings)
        self.pool = pool
        self.detector = detector or PiiDetector(settings.pii.engines, types=settings.pii.types)
        self.audit = audit
        self.memo = TextMemo(self._findings, settings.screen_cache)
        self._header = settings.header.lower()  # request headers arrive lower-cased
        self._lowest_entry = f"class:{settings.lowest}"
        # Read on every request: a pydantic model's attribute costs ~5x a plain one's.
        self._pii_enabled = settings.pii.enabled
        self._pseudonymise = settings.pii.pseudonymise
        # Per class, until the pool changes (add, reprice, drain, remove).
        self._pseudonyms_wanted = PoolAnswers(pool, self._some_worker_needs_pseudonyms)

    def _findings(self, text: str) -> tuple[Finding, ...]:
        return tuple(self.detector.inspect(text))

    def _declared(self, context: RequestContext) -> list[str]:
        declared: list[str] = []
        header = context.headers.get(self._header)
        if header is not None:
            declared.append(self.classes.check(header, where=self.settings.header))
        from_key = context.caller.metadata.get("data_class")
        if from_key:
            declared.append(self.classes.check(from_key, where="key metadata data_class"))
        if context.data_class in self.classes.rank:
            declared.append(context.data_class)  # set by a contract before the gateway ran
        return declared

    def _wants_pseudonyms(self, data_class: str) -> bool:
        mode = self._pseudonymise
        if mode == "never":
            return False
        if mode == "always":
            return True
        # auto: only when some serving worker is cleared for this class only pseudonymised.
        return self._pseudonyms_wanted.get(data_class)

    def _some_worker_needs_pseudonyms(self, data_class: str) -> bool:
        return any(
            self.classes.needs_pseudonyms(worker.config, data_class)
            for worker in self.pool.serving()
        )

    async def transform_request(self, request: ChatRequest, context: RequestContext) -> ChatRequest:
        declared = self._declared(context)
        if request.has_images():
            # No detector reads an image: say so in the trace, and apply the configured floor.
            context.policy_actions.append("images:unscanned")
            if self.settings.images_class is not None:
                declared.append(self.settings.images_class)
        memo: dict[str, list[Finding]] = {text: [] for text in context.operator_texts}

        def inspect(text: str) -> list[Finding]:
            cached = memo.get(text)
            if cached is None:
                cached = memo[text] = list(self.memo(text))
            return cached

        findings: list[Finding] = []
        operators_schema = context.ingress == "contract"  # the contract's, not the caller's
        if self._pii_enabled:
            for message in request.messages:
                if message.content:
                    findings += message_findings(message, inspect)
                if message.tool_calls:
                    for call in message.tool_calls:
                        findings += inspect(call.arguments)
            if request.tools or request.stop or request.response_format is not None:
                for text in settings_texts(request, schema=not operators_schema):
                    findings += inspect(text)
        if request.attachments:
            findings += await self._documents(request, context, declared, memo)
        if findings:
            detected_class, kinds = self.classes.detected(findings)
            context.data_class = self.classes.highest([*declared, detected_class])
            context.policy_actions.append(f"class:{context.data_class} pii={','.join(kinds)}")
        elif declared:
            context.data_class = self.classes.highest(declared)
            context.policy_actions.append(f"class:{context.data_class}")
        else:  # the usual request: nothing declared, nothing found
            context.data_class = self.settings.lowest
            context.policy_actions.append(self._lowest_entry)
        if not self._wants_pseudonyms(context.data_class):
            return request
        vault = Vault()
        # The same finds as above, placed in each message's joined text and replaced in every
        # part a value spans, so what classified the request is what is replaced.
        request, replaced = pseudonymise_request(
            request, vault, inspect, schema=not operators_schema
        )
        context.pseudonyms = vault.table
        form = request.response_format
        context.answer_is_json = form is not None and form.type != "text"
        if replaced:
            counts = Counter(replaced)
            note(
                context,
                self.audit,
                "request.redacted",
                "pii:pseudonymised " + ",".join(f"{k}={n}" for k, n in sorted(counts.items())),
                {"pseudonymised": dict(sorted(counts.items())), "class": context.data_class},
            )
        return request

    async def _documents(
        self,
        request: ChatRequest,
        context: RequestContext,
        declared: list[str],
        memo: dict[str, list[Finding]],
    ) -> list[Finding]:
        """What the detectors find in the documents' text (kept in ``memo`` for
        pseudonymising). A PDF without text counts as unscanned, as an image does."""
        unscanned = False
        texts: list[str] = []
        for part in request.document_parts():
            if part.text is None:
                unscanned = True  # its name and context are still read, below
            if self._pii_enabled:
                texts.append(readable(part))
        if unscanned:
            context.policy_actions.append("documents:unscanned")
            if self.settings.documents_class is not None:
                declared.append(self.settings.documents_class)
        unread: list[str] = []
        for text in dict.fromkeys(texts):
            if text not in memo:
                known = self.memo.known(text)
                if known is None:
                    unread.append(text)
                else:
                    memo[text] = list(known)
        if sum(map(len, unread)) > _THREAD_CHARS:
            # A long document takes the detectors a second or more (~300,000 characters):
            # read off the event loop, so the other requests in flight are not held up.
            found = await asyncio.to_thread(lambda: [self._findings(text) for text in unread])
            for text, findings in zip(unread, found, strict=True):
                self.memo.keep(text, findings)
        else:
            found = [self.memo(text) for text in unread]
        for text, findings in zip(unread, found, strict=True):
            memo[text] = list(findings)
        return [finding for text in texts for finding in memo[text]]

    def eligible(
        self, workers: list[WorkerConfig], request: ChatRequest, context: RequestContext
    ) -> list[WorkerConfig]:
        # Pseudonymisation replaces values in text; an image, or a PDF sent without its text,
        # goes as it came, so such a request is cleared by plain clearance only.
        pseudonymised = (
            context.pseudonyms is not None
            and not request.has_images()
            and not (request.attachments and unreadable(request))
        )
        allowed = [
            worker
            for worker in workers
            if self.classes.cleared(worker, context.data_class, pseudonymised=pseudonymised)
        ]
        if not allowed and workers:
            kinds = sorted(
                {entry for entry in context.policy_actions if entry.startswith("class:")}
            )
            note(
                context,
                self.audit,
                "request.refused",
                f"clearance:refused class={context.data_class}",
                {"status": 403, "code": "no_cleared_worker", "class": context.data_class},
            )
            detected = kinds[0].partition(" pii=")[2].split(",") if kinds else []
            raise self.classes.refusal(context, [kind for kind in detected if kind])
        return allowed

    def transform_response(self, response: ChatResponse, context: RequestContext) -> ChatResponse:
        if context.pseudonyms:
            vault = Vault(context.pseudonyms)
            return restore_response(response, vault, json_text=context.answer_is_json)
        return response

    def transform_events(self, events: EventStream, context: RequestContext) -> EventStream:
        if context.pseudonyms:
            vault = Vault(context.pseudonyms)
            return restore_events(events, vault, json_text=context.answer_is_json)
        return events


# Documents' text past this many characters is searched for PII in a thread.
_THREAD_CHARS = 50_000
# Characters two screened windows of a document share (an attack sentence is far shorter).
_WINDOW_OVERLAP = 1000


class InjectionHook(Hook):
    """Screens what the caller and tools wrote (not the application's system prompt), then
    flags, blocks or reroutes to hardened workers, per key (metadata ``injection``) or by
    the configured default."""

    def __init__(
        self, settings: ContentPolicySettings, screen: InjectionScreen, *, audit: Audit | None
    ) -> None:
        self.settings = settings.injection
        self.screen = screen
        self.audit = audit
        # Verdicts are shared between requests with the same text: read them, never change.
        self.verdict = TextMemo(screen.verdict, settings.screen_cache)

    def action(self, context: RequestContext) -> InjectionAction:
        chosen = context.caller.metadata.get("injection")
        if chosen is None:  # the usual key: no setting of its own
            return self.settings.action
        for action in INJECTION_ACTIONS:
            if chosen == action:
                return action
        return self.settings.action

    async def admit(self, request: ChatRequest, context: RequestContext) -> None:
        action = self.action(context)
        if action == "off":
            return
        texts = [message.text() for message in request.messages if message.role in _UNTRUSTED_ROLES]
        # One message (the usual request) is its own text: no join.
        untrusted = texts[0] if len(texts) == 1 else "\n".join(texts)
        verdict = self.verdict(untrusted[-self.settings.max_chars :])
        if not verdict.flagged and request.attachments:
            # What a document says is a stranger's, and an attack may sit on any page: every
            # part of it is screened (~1 ms per 20,000 characters), not its end alone.
            for window in self._windows(request):
                verdict = self.verdict(window)
                if verdict.flagged:
                    break
        if not verdict.flagged:
            return
        signals = ",".join(verdict.signals)
        details = {"signals": verdict.signals, "score": round(verdict.score, 3), "action": action}
        if action == "block":
            note(context, self.audit, "request.refused", f"injection:block {signals}", details)
            raise PodiumError(
                "permission",
                "the request was refused by the prompt-injection screen "
                f"(signals: {signals}); rephrase it, or ask for a key with another policy",
                code="prompt_injection",
            )
        if action == "reroute":
            note(context, self.audit, "request.rerouted", f"{REROUTED} {signals}", details)
            return
        note(context, None, "", f"injection:flag {signals}", details)

    def _windows(self, request: ChatRequest) -> Iterator[str]:
        """The documents' text in screen-sized windows, overlapping so that no sentence falls
        between two."""
        size = self.settings.max_chars
        step = max(size - _WINDOW_OVERLAP, size // 2)
        for part in request.document_parts():
            text = readable(part)  # a file's name or title is the caller's words too
            last = max(len(text) - size, 0)  # the last window ends where the text does
            for start in [*range(0, last, step), last]:
                yield text[start : start + size]

    def eligible(
        self, workers: list[WorkerConfig], request: ChatRequest, context: RequestContext
    ) -> list[WorkerConfig]:
        if not rerouted_for_injection(context):
            return workers
        hardened = set(self.settings.hardened_workers)
        allowed = [worker for worker in workers if worker.name in hardened]
        if not allowed:
            raise PodiumError(
                "permission",
                "the request was flagged by the prompt-injection screen and no hardened "
                "worker is available for it",
                code="prompt_injection",
            )
        return allowed


def register_app(podium: Podium) -> None:
    settings = podium.config.policy
    if not settings.enabled:
        return
    classes = DataClasses(settings)
    classes.validate_workers(podium.config)
    audit: Audit | None = getattr(podium, "audit", None)
    screen = InjectionScreen(
        threshold=settings.injection.threshold, use_classifier=settings.injection.classifier
    )
    # The screen is registered even when the default action is "off": a key may turn it on.
    hooks: list[Hook] = [
        InjectionHook(settings, screen, audit=audit),
        DataPolicyHook(settings, podium.pool, audit=audit),
        CostGuardHook(settings.cost, podium.pool, audit=audit, classes=classes),
    ]
    # After authentication and limits (which put themselves first): nothing here should run
    # for a caller who is not allowed in.
    podium.gateway.hooks.extend(hooks)
    podium.extras["data_classes"] = classes
