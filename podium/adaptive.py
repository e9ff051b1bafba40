"""A worker's concurrency limit learned from how fast it answers (``limits.adaptive``).

A self-hosted server (vLLM, llama.cpp, Ollama) takes some number of calls at once and queues
the rest inside itself, where Podium's priorities cannot reach them and every caller waits
alike. Its operator rarely knows that number, and it moves with the hardware, the model and
the length of the prompts. So Podium finds it the way TCP finds a path's capacity: it lets one
more call in at a time while answers come as fast as the worker's best, and lets fewer in as
soon as they slow down. It starts at ``min``.

The signal is seconds per answer token, averaged over a window of answers (at least
``MIN_WINDOW``, and at least the limit's worth, so each window sees the limit at work). It is
compared with the worker's best: its speed uncrowded. A window whose average is more than
``tolerance`` times the best lowers the limit by a quarter; a window whose calls mostly found
the limit reached, and were answered at speed, raises it: by half until the first slowdown
(the quick climb of a start), by one after. An upstream that says it is overloaded (429, 503,
529) or times out halves the limit at once.

The best must be measured uncrowded: taken from crowded windows it would let the limit creep
up without end (TCP Vegas's old trouble). Under steady load the limit settles near
``tolerance`` times what the worker takes at once, so every ``PROBE_EVERY`` windows one window
is run at a ``tolerance``-th of the limit, where the worker is uncrowded again, and its average
becomes the best (as does any window at ``min``); then the limit is put back. A server that
became slower or faster is so relearned within that many windows. Against a server that
queues what it cannot start, the probe costs nothing: it still has its fill of calls.

Each change starts an epoch: answers to calls sent before it say nothing of the new limit and
are not counted, so one slow spell lowers the limit once, not once per call in flight.
"""

from __future__ import annotations

import math

from podium.config import AdaptiveConcurrency

MIN_WINDOW = 10  # answers averaged for one look at the worker's speed
PROBE_EVERY = 20  # windows between two measures of the worker's speed uncrowded
SLOWER = 0.75  # the limit's share kept after a slow window
OVERLOADED = 0.5  # the limit's share kept after the upstream says it is overloaded


class AdaptiveLimit:
    def __init__(self, settings: AdaptiveConcurrency) -> None:
        self.settings = settings
        # The first windows, at ``min``, measure the worker uncrowded: the best to compare with.
        self.limit = settings.min
        self.epoch = 0
        self.climbing = True  # no slowdown seen yet: raise by half at a time
        self.raised = 0
        self.lowered = 0
        self._window: list[float] = []
        self._busy = 0  # answers in the window whose call found the limit reached
        self.best: float | None = None  # seconds per answer token, uncrowded
        self._since_probe = 0  # windows since the best was last measured
        self._restore: int | None = None  # the limit to put back after the probe's window

    def retune(self, settings: AdaptiveConcurrency) -> None:
        """New bounds or tolerance, keeping what has been learned within them."""
        self.settings = settings
        self._set(min(settings.max, max(settings.min, self.limit)))

    def answered(self, seconds: float, answer_tokens: int, *, busy: bool, epoch: int) -> bool:
        """One answer, ``seconds`` after it was sent; ``busy``: its call took the last room
        or waited for it. True when the limit changed."""
        if epoch != self.epoch:
            return False
        window = self._window
        window.append(seconds / (answer_tokens + 1))
        self._busy += busy
        if len(window) < max(MIN_WINDOW, self.limit):
            return False
        average = math.fsum(window) / len(window)
        mostly_busy = self._busy * 2 >= len(window)
        window.clear()
        self._busy = 0
        if self._restore is not None:  # the probe's window: the worker uncrowded
            self.best, restore, self._restore = average, self._restore, None
            return self._set(min(self.settings.max, max(self.settings.min, restore)))
        best = self.best
        if best is None or average < best or self.limit <= self.settings.min:
            self.best = average
        elif average > self.settings.tolerance * best:
            self.climbing = False
            return self._lower(SLOWER)
        self._since_probe += 1
        if self._since_probe >= PROBE_EVERY:
            return self._probe()
        if not mostly_busy or self.limit >= self.settings.max:
            return False
        step = max(1, self.limit // 2) if self.climbing else 1
        self.raised += 1
        return self._set(min(self.settings.max, self.limit + step))

    def overloaded(self, epoch: int) -> bool:
        """The upstream said it is overloaded, or did not answer in time, for a call sent at
        ``epoch``. True when the limit changed."""
        if epoch != self.epoch:
            return False
        self.climbing = False
        return self._lower(OVERLOADED)

    def _probe(self) -> bool:
        self._since_probe = 0
        probe = max(self.settings.min, math.floor(self.limit / self.settings.tolerance))
        if probe >= self.limit:
            return False
        self._restore = self.limit
        return self._set(probe)

    def _lower(self, keep: float) -> bool:
        self._restore = None  # a probe cut short by trouble: the lower limit stands
        lowered = max(self.settings.min, math.floor(self.limit * keep))
        if lowered == self.limit:
            return False
        self.lowered += 1
        return self._set(lowered)

    def _set(self, limit: int) -> bool:
        if limit == self.limit:
            return False
        self.limit = limit
        self.epoch += 1
        self._window.clear()
        self._busy = 0
        return True
