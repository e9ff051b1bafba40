#!/bin/sh
# The code run again with the cascade's repair option (pool.yaml beside this file), from the
# repository root; resumable. Every row but the router's 13 human_eval answers is the code
# run's (../results.jsonl, copied here): those were the only requests the option changes.
set -e
T=${TASKS:-../shared/data/tasks}
[ -f reports/live/code/repair/train.jsonl ] || cp reports/live/train.jsonl reports/live/code/repair/train.jsonl
exec podium eval live \
  --tasks "$T/arc_easy/dev.jsonl" --tasks "$T/commonsense_qa/dev.jsonl" \
  --tasks "$T/triviaqa_sm_sub/dev.jsonl" --tasks "$T/svamp/dev.jsonl" \
  --tasks "$T/human_eval/dev.jsonl" --limit 55 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit 500 \
  --strategies single,router \
  --config reports/live/code/repair/pool.yaml --concurrency 2 --out reports/live/code/repair "$@"
