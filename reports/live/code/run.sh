#!/bin/sh
# The run behind this report (from the repository root; resumable: run it again to continue).
# The four tasks of ../report.md plus human_eval's 13 dev questions, for each worker alone and
# the router with the python-function rule of pool.yaml (code goes to the cascade checked by
# the docstring's examples; everything else to the learned router, trained as in ../run.sh
# from the same train answers, which ../train.jsonl holds: copied here, nothing is re-asked).
set -e
T=${TASKS:-../shared/data/tasks}
[ -f reports/live/code/train.jsonl ] || cp reports/live/train.jsonl reports/live/code/train.jsonl
exec podium eval live \
  --tasks "$T/arc_easy/dev.jsonl" --tasks "$T/commonsense_qa/dev.jsonl" \
  --tasks "$T/triviaqa_sm_sub/dev.jsonl" --tasks "$T/svamp/dev.jsonl" \
  --tasks "$T/human_eval/dev.jsonl" --limit 55 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit 500 \
  --strategies single,router \
  --config reports/live/code/pool.yaml --concurrency 2 --out reports/live/code "$@"
