"""Data classes and clearance.

Every request gets a class: the highest of the caller's declaration (the
``x-podium-data-class`` header, a contract, the key's ``data_class`` metadata) and what the
PII detectors find. Every worker is cleared up to some class (``profile.cleared``; listing
``confidential`` clears it for everything below too), and possibly for higher classes only
once PII is pseudonymised (``profile.pseudonymised``). Clearance is a hard filter before any
router; if no worker is cleared, the request is refused and never sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from podium.config import PodiumConfig, WorkerConfig
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.policy.content_settings import ContentPolicySettings
from podium.policy.findings import Finding


class DataClasses:
    """The configured order of data classes, lowest first."""

    def __init__(self, settings: ContentPolicySettings) -> None:
        self.settings = settings
        self.order = list(settings.classes)
        self.rank = {name: index for index, name in enumerate(self.order)}
        self._ceilings: dict[tuple[str, ...], int] = {}

    def check(self, name: str, *, where: str) -> str:
        """``name`` normalised, or a 400 naming the known classes."""
        cleaned = name.strip().lower()
        if cleaned not in self.rank:
            raise PodiumError(
                "invalid_request",
                f"unknown data class {name!r} in {where}; known classes, lowest first: "
                f"{', '.join(self.order)}",
                param=where,
                code="unknown_data_class",
            )
        return cleaned

    def highest(self, names: Iterable[str]) -> str:
        best = self.settings.lowest
        for name in names:
            if self.rank[name] > self.rank[best]:
                best = name
        return best

    def declare(self, context: RequestContext, name: str, *, where: str = "contract") -> None:
        """Raise the request's class to at least ``name`` (for contracts and other callers
        that know more about the data than the detectors do)."""
        declared = self.check(name, where=where)
        current = context.data_class if context.data_class in self.rank else self.settings.lowest
        context.data_class = self.highest([current, declared])

    def detected(self, findings: Sequence[Finding]) -> tuple[str, list[str]]:
        """The class the findings make a request, and the PII types behind it."""
        kinds = sorted({finding.kind for finding in findings})
        return self.highest(self.settings.pii_class(kind) for kind in kinds), kinds

    # -- clearance --------------------------------------------------------------------------------

    def _ceiling(self, names: Sequence[str]) -> int:
        # Asked several times per request for the same few clearance lists: remember them.
        key = tuple(names)
        found = self._ceilings.get(key)
        if found is None:
            found = max((self.rank[name] for name in names if name in self.rank), default=-1)
            self._ceilings[key] = found
        return found

    def cleared(self, worker: WorkerConfig, data_class: str, *, pseudonymised: bool) -> bool:
        needed = self.rank.get(data_class, len(self.order))
        if self._ceiling(worker.profile.cleared) >= needed:
            return True
        return pseudonymised and self._ceiling(worker.profile.pseudonymised) >= needed

    def needs_pseudonyms(self, worker: WorkerConfig, data_class: str) -> bool:
        """Cleared for ``data_class`` only once PII is pseudonymised."""
        return not self.cleared(worker, data_class, pseudonymised=False) and self.cleared(
            worker, data_class, pseudonymised=True
        )

    def validate_workers(self, config: PodiumConfig) -> None:
        """Every class a worker names must exist: a typo must not silently clear nothing."""
        for worker in config.workers:
            for name in [*worker.profile.cleared, *worker.profile.pseudonymised]:
                if name not in self.rank:
                    from podium.config import ConfigError

                    raise ConfigError(
                        f"workers.{worker.name}.profile: unknown data class {name!r}; "
                        f"policy.classes are {', '.join(self.order)}"
                    )

    def refusal(self, context: RequestContext, detected: list[str]) -> PodiumError:
        why = f" (PII found: {', '.join(detected)})" if detected else ""
        return PodiumError(
            "permission",
            f"no worker is cleared for data class {context.data_class!r}{why}; the request "
            "was not sent to any model",
            code="no_cleared_worker",
        )
