#!/bin/sh
# The run behind this report (from the repository root; resumable: run it again to continue).
# The four tasks of ../report.md plus human_eval's 13 dev questions, for each worker alone,
# Mixture-of-Agents (its rows for the four tasks are ../results.jsonl's, copied) and the router
# with the rules of pool.yaml (Python functions with docstring examples go to the
# cascade checked by those examples; everything else to the learned router, trained as in
# ../run.sh from the same train answers, which ../train.jsonl holds: copied here, nothing is
# re-asked). OUT=reports/live/code/repair STRATEGIES=single,router runs the same with that
# folder's pool.yaml.
set -e
T=${TASKS:-../shared/data/tasks}
OUT=${OUT:-reports/live/code}
[ -f "$OUT/train.jsonl" ] || cp reports/live/train.jsonl "$OUT/train.jsonl"
exec podium eval live \
  --tasks "$T/arc_easy/dev.jsonl" --tasks "$T/commonsense_qa/dev.jsonl" \
  --tasks "$T/triviaqa_sm_sub/dev.jsonl" --tasks "$T/svamp/dev.jsonl" \
  --tasks "$T/human_eval/dev.jsonl" --limit 55 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit 500 \
  --strategies "${STRATEGIES:-single,router,moa}" \
  --config "$OUT/pool.yaml" --concurrency 2 --out "$OUT" "$@"
