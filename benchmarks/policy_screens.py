"""Instructions per message of each content screen, counted by valgrind rather than timed.

On a shared machine CPU time moves by tens of percent between identical runs; instruction
counts do not. The screens run on the gateway benchmark's user messages (a new one each time,
as in production), with nothing else in the process. Count twice and take the difference, so
start-up (imports, loading the models) cancels out:

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        .venv/bin/python -m benchmarks.policy_screens verdict --messages 0
    valgrind ... (the same) verdict --messages 1000
    # (I refs of the second - I refs of the first) / 1000 = instructions per message

To compare two versions, run both from their own checkouts (``git worktree add``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from benchmarks.gateway.bodies import user_message
from podium.policy.detect import PiiDetector
from podium.policy.guard import InjectionScreen


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("screen", choices=["verdict", "classifier", "pii", "tagger", "patterns"])
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    screen = InjectionScreen()
    detector = PiiDetector()
    screens: dict[str, Callable[[str], Any]] = {
        "verdict": screen.verdict,
        "classifier": screen.classifier.probability,
        "pii": detector.inspect,
        "tagger": detector.tagger.inspect,
        "patterns": detector.detectors[0].inspect,
    }
    run = screens[args.screen]
    run("Load the models: John Smith, 221B Baker Street, +44 20 7946 0958")
    for number in range(args.messages):
        run(user_message(300_000 + number))


if __name__ == "__main__":
    main()
