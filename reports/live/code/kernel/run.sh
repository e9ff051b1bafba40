#!/bin/sh
# The router's 13 human_eval dev answers asked again, live, after the sandbox gained the
# kernel's limits (Landlock and seccomp): the same pool and rules as ../pool.yaml, the same
# learned router (trained from ../../train.jsonl, copied; nothing is re-asked on train).
set -e
T=${TASKS:-../shared/data/tasks}
OUT=reports/live/code/kernel
[ -f "$OUT/train.jsonl" ] || cp reports/live/train.jsonl "$OUT/train.jsonl"
exec podium eval live --tasks "$T/human_eval/dev.jsonl" --limit 55 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit 500 --strategies router \
  --config reports/live/code/pool.yaml --concurrency 2 --out "$OUT" "$@"
