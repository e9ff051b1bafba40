#!/bin/sh
# The third learned-program run (from the repository root; resumable). ../full/run.sh (the
# same train answers, the same router training), calibrated to the other side of the trade:
# the best accuracy on train at no more than the 1.5B's cost there
# (`podium router calibrate --within-best-worker-cost`), where ../full/ matched the 1.5B's
# accuracy at the least cost. Chosen after ../full/ had been seen; nothing else changed.
OUT=reports/live/program/learned/within-cost exec reports/live/program/learned/full/run.sh \
  --calibration within-best-worker-cost "$@"
