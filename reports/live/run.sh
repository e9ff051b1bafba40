#!/bin/sh
# The run behind this report (from the repository root; resumable: run it again to continue).
# The train split goes through every worker first (500 questions per task, all 207 of
# svamp; feedback posted against each trace), the router is trained from those answers (from
# the traces, or from train.jsonl when an earlier run asked some of them) and its lambda and
# floor calibrated on them by 5-fold cross-validation; then every dev question goes through
# every strategy. TRAIN_LIMIT=60 or 200 gives the earlier, smaller feedback loops.
set -e
T=${TASKS:-../shared/data/tasks}
exec podium eval live \
  --tasks "$T/arc_easy/dev.jsonl" --tasks "$T/commonsense_qa/dev.jsonl" \
  --tasks "$T/triviaqa_sm_sub/dev.jsonl" --tasks "$T/svamp/dev.jsonl" --limit 55 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit ${TRAIN_LIMIT:-500} \
  --strategies single,router,cascade,workflow,moa,conductor \
  --config reports/live/pool.yaml --concurrency 2 --out reports/live "$@"
