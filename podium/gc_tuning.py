"""How the server process's cyclic garbage collector runs.

A full collection walks every object the collector tracks. Most of a gateway's heap is what
start-up loaded (router and policy models, tokenizer vocabularies, validated configuration)
and lives as long as the process; walking it again on every full collection stalled the
request in flight for tens of milliseconds. So once start-up is done those objects are frozen
(the collector no longer walks them; reference counting still frees them), and the young
generations are collected less often than CPython's defaults, which are tuned for programs
allocating far fewer short-lived objects per second than a busy gateway.

The collector belongs to the process, not to one app: ``podium serve`` applies these settings,
while an app built inside another program (tests, an embedding service) leaves its collector
alone.
"""

from __future__ import annotations

import gc

from podium.config import CollectorSettings


def tune_collector(settings: CollectorSettings) -> None:
    if settings.thresholds is not None:
        gc.set_threshold(*settings.thresholds)
    if settings.freeze_after_start:
        gc.collect()  # start-up's own garbage goes first, or it would be frozen too
        gc.freeze()
