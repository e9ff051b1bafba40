#!/bin/sh
# gsm8k's 126 dev questions, the 1.5B alone and the router of ../pool.yaml (word problems to
# the program template), side by side in one pass; the learned router trained as in ../run.sh
# (../../train.jsonl, copied; nothing is re-asked).
set -e
T=${TASKS:-../shared/data/tasks}
OUT=reports/live/program/gsm8k
[ -f "$OUT/train.jsonl" ] || cp reports/live/train.jsonl "$OUT/train.jsonl"
exec podium eval live --tasks "$T/gsm8k/dev.jsonl" --limit 126 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit 500 --strategies single:qwen2.5-coder-1.5b,router \
  --config reports/live/program/pool.yaml --concurrency 2 --out "$OUT" "$@"
