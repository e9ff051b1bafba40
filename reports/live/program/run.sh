#!/bin/sh
# The run behind the program results (from the repository root; resumable: run it again to
# continue). The code run's 216 dev questions (../code/), the router asked again with the
# rules of pool.yaml: ../code/pool.yaml's plus arithmetic word problems answered by a program
# the 1.5B writes. The single-worker and Mixture-of-Agents rows are ../code/results.jsonl's,
# copied (their code path did not change); the learned router is trained as in ../run.sh from
# the same train answers (../train.jsonl, copied; nothing is re-asked).
set -e
T=${TASKS:-../shared/data/tasks}
OUT=reports/live/program
[ -f "$OUT/train.jsonl" ] || cp reports/live/train.jsonl "$OUT/train.jsonl"
[ -f "$OUT/results.jsonl" ] || grep -v '"strategy": "router"' reports/live/code/results.jsonl > "$OUT/results.jsonl"
exec podium eval live \
  --tasks "$T/arc_easy/dev.jsonl" --tasks "$T/commonsense_qa/dev.jsonl" \
  --tasks "$T/triviaqa_sm_sub/dev.jsonl" --tasks "$T/svamp/dev.jsonl" \
  --tasks "$T/human_eval/dev.jsonl" --limit 55 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit 500 \
  --strategies "${STRATEGIES:-single,router,moa}" \
  --config "$OUT/pool.yaml" --concurrency 2 --out "$OUT" "$@"
