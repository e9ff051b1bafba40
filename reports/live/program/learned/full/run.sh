#!/bin/sh
# The second learned-program run (from the repository root; resumable). ../run.sh, but the
# router learns the workers from all their train answers (500 questions per task, 1,707 in
# all: ../../../train.jsonl, as the main report's router does) and the program workflow from
# the 400 it answered in ../ (the first 100 of each task: ../train-workflow.jsonl). Nothing is
# asked on train; the router is asked again on dev.
OUT=${OUT:-reports/live/program/learned/full} TRAIN_LIMIT=500 \
  exec reports/live/program/learned/run.sh --train-workflow-limit 100 "$@"
