#!/bin/sh
# The code run again with the cascade's repair option (pool.yaml beside this file), from the
# repository root; resumable. Every row but the router's 13 human_eval answers is the code
# run's (../results.jsonl, copied here): those were the only requests the option changes.
OUT=reports/live/code/repair STRATEGIES=single,router exec sh reports/live/code/run.sh "$@"
