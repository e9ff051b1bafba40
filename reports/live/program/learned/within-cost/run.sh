#!/bin/sh
# The third learned-program run (from the repository root; resumable). As ../full/run.sh (the
# same train answers, the same router training), calibrated to the other side of the trade:
# the best accuracy on train at no more than the 1.5B's cost there
# (`podium router calibrate --within-best-worker-cost`), where ../full/ matched the 1.5B's
# accuracy at the least cost. Chosen after ../full/ had been seen; nothing else changed.
set -e
T=${TASKS:-../shared/data/tasks}
OUT=reports/live/program/learned/within-cost
[ -f "$OUT/train.jsonl" ] || cat reports/live/train.jsonl reports/live/program/learned/train-workflow.jsonl > "$OUT/train.jsonl"
[ -f "$OUT/results.jsonl" ] || grep -v '"strategy": "router"' reports/live/program/results.jsonl > "$OUT/results.jsonl"
exec podium eval live \
  --tasks "$T/arc_easy/dev.jsonl" --tasks "$T/commonsense_qa/dev.jsonl" \
  --tasks "$T/triviaqa_sm_sub/dev.jsonl" --tasks "$T/svamp/dev.jsonl" \
  --tasks "$T/human_eval/dev.jsonl" --limit 55 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit 500 \
  --train-workflow 'program(qwen2.5-coder-1.5b,python,qwen2.5-coder-1.5b)' --train-workflow-limit 100 --calibration within-best-worker-cost \
  --strategies "${STRATEGIES:-single,router,moa}" \
  --config reports/live/program/learned/pool.yaml --concurrency 2 --out "$OUT" "$@"
