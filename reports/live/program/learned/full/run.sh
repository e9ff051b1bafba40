#!/bin/sh
# The second learned-program run (from the repository root; resumable). As ../run.sh, but the
# router learns the workers from all their train answers (500 questions per task, 1,707 in
# all: ../../../train.jsonl, as the main report's router does) and the program workflow from
# the 400 it answered in ../ (the first 100 of each task: ../train-workflow.jsonl). Nothing is
# asked on train; the router is asked again on dev.
set -e
T=${TASKS:-../shared/data/tasks}
OUT=${OUT:-reports/live/program/learned/full}
[ -f "$OUT/train.jsonl" ] || cat reports/live/train.jsonl reports/live/program/learned/train-workflow.jsonl > "$OUT/train.jsonl"
[ -f "$OUT/results.jsonl" ] || grep -v '"strategy": "router"' reports/live/program/results.jsonl > "$OUT/results.jsonl"
exec podium eval live \
  --tasks "$T/arc_easy/dev.jsonl" --tasks "$T/commonsense_qa/dev.jsonl" \
  --tasks "$T/triviaqa_sm_sub/dev.jsonl" --tasks "$T/svamp/dev.jsonl" \
  --tasks "$T/human_eval/dev.jsonl" --limit 55 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit 500 \
  --train-workflow 'program(qwen2.5-coder-1.5b,python,qwen2.5-coder-1.5b)' --train-workflow-limit 100 \
  --strategies "${STRATEGIES:-single,router,moa}" \
  --config reports/live/program/learned/pool.yaml --concurrency 2 --out "$OUT" "$@"
