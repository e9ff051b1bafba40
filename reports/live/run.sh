#!/bin/sh
# The run behind this report (from the repository root; resumable: run it again to continue).
set -e
T=${TASKS:-../shared/data/tasks}
exec podium eval live \
  --tasks "$T/arc_easy/dev.jsonl" --tasks "$T/commonsense_qa/dev.jsonl" \
  --tasks "$T/triviaqa_sm_sub/dev.jsonl" --tasks "$T/svamp/dev.jsonl" --limit 55 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit 12 \
  --strategies single,router,cascade,workflow,moa,conductor \
  --config reports/live/pool.yaml --concurrency 3 --out reports/live "$@"
