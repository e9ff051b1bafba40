#!/bin/sh
# The run behind the learned-program results (from the repository root; resumable: run it
# again to continue). ../'s 216 dev questions, the router asked again with pool.yaml: no rule
# for arithmetic; instead the train split's first 100 questions of each task are asked through
# the program workflow too, and the learned router, trained on those 400 questions (every
# worker's answers and the workflow's), chooses per request between the workers and the
# workflow. The single-worker and Mixture-of-Agents rows are ../results.jsonl's, copied; the
# workers' train answers are ../../train.jsonl's, copied (only the workflow is asked on train;
# its answers are kept in train-workflow.jsonl).
# full/run.sh and within-cost/run.sh run this script with another OUT, TRAIN_LIMIT and more
# options.
set -e
T=${TASKS:-../shared/data/tasks}
HERE=reports/live/program/learned
OUT=${OUT:-$HERE}
# the workers' train answers, and the workflow's where an earlier run recorded them
[ -f "$OUT/train.jsonl" ] || cat reports/live/train.jsonl $(ls "$HERE/train-workflow.jsonl" 2>/dev/null) > "$OUT/train.jsonl"
[ -f "$OUT/results.jsonl" ] || grep -v '"strategy": "router"' reports/live/program/results.jsonl > "$OUT/results.jsonl"
exec podium eval live \
  --tasks "$T/arc_easy/dev.jsonl" --tasks "$T/commonsense_qa/dev.jsonl" \
  --tasks "$T/triviaqa_sm_sub/dev.jsonl" --tasks "$T/svamp/dev.jsonl" \
  --tasks "$T/human_eval/dev.jsonl" --limit 55 \
  --train-router "$T/arc_easy/train.jsonl" --train-router "$T/commonsense_qa/train.jsonl" \
  --train-router "$T/triviaqa_sm_sub/train.jsonl" --train-router "$T/svamp/train.jsonl" \
  --train-limit "${TRAIN_LIMIT:-100}" \
  --train-workflow 'program(qwen2.5-coder-1.5b,python,qwen2.5-coder-1.5b)' \
  --strategies "${STRATEGIES:-single,router,moa}" \
  --config "$HERE/pool.yaml" --concurrency 2 --out "$OUT" "$@"
