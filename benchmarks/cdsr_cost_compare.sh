#!/bin/bash
# Seconds per training step of the cdsr models against SASRec on afk (benchmarks/cdsr_cost.py),
# for the current commit and a previous one, plus the epoch probe of the SASRec baselines
# (benchmarks/cdsr_epoch_probe.py), all in ONE job so that every number sees the same machine.
# Each code version runs from a `git archive` of its commit (the worktree may change meanwhile).
#
#   HEAVY_ALL=1 OMP_NUM_THREADS=1 /work/bin/heavy bash benchmarks/cdsr_cost_compare.sh [PREV] [PROBE_OLD]
#
# PREV (default 768391c, before this session's cost work), PROBE_OLD (default 5f3efb0, the code
# that recorded food_kitchen_sasrec.json). JSONs go to benchmarks/results/ (most important first).
set -u
PREV=${1:-768391c}
PROBE_OLD=${2:-5f3efb0}
ROOT=$(git rev-parse --show-toplevel) && cd "$ROOT" || exit 1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
PY=${PYTHON:-python}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for c in HEAD "$PREV" "$PROBE_OLD"; do
  mkdir -p "$T/$c" && git archive "$c" src benchmarks | tar -x -C "$T/$c" || exit 1
done
NEW=$(git rev-parse --short HEAD)
R=$ROOT/benchmarks/results
W=$ROOT/work
COST=$T/HEAD/benchmarks/cdsr_cost.py
PROBE=$T/HEAD/benchmarks/cdsr_epoch_probe.py
M="afk_sasrec afk_haf_vt afk_c2dsr afk_llm_emf-no_llm"
echo "=== start $(date -u +%T) commit $NEW (prev $PREV) load $(cat /proc/loadavg)"
PYTHONPATH=$T/HEAD/src $PY "$COST" --steps 40 --batch-size 32 --models $M --work-dir "$W" --bench-dir "$ROOT/benchmarks" --label "$NEW" \
  --json "$R/cdsr_cost_afk.json"
PYTHONPATH=$T/$PREV/src $PY "$COST" --steps 40 --batch-size 32 --models $M --work-dir "$W" --bench-dir "$ROOT/benchmarks" --label "$PREV" \
  --json "$R/cdsr_cost_afk_prev.json"
PYTHONPATH=$T/HEAD/src $PY "$COST" --steps 40 --batch-size 32 --models $M --work-dir "$W" --bench-dir "$ROOT/benchmarks" --label "$NEW" \
  --fused-adam --json "$R/cdsr_cost_afk_fused.json"
echo "=== epoch probe, current code $(date -u +%T)"
PYTHONPATH=$T/HEAD/src $PY "$PROBE" food_kitchen_sasrec afk_sasrec --steps 40 --work-dir "$W" --bench-dir "$ROOT/benchmarks" \
  --json "$R/cdsr_epoch_probe.json"
echo "=== epoch probe, code of $PROBE_OLD $(date -u +%T)"
PYTHONPATH=$T/$PROBE_OLD/src $PY "$PROBE" food_kitchen_sasrec afk_sasrec --steps 40 --work-dir "$W" --bench-dir "$ROOT/benchmarks" \
  --json "$R/cdsr_epoch_probe_$PROBE_OLD.json"
PYTHONPATH=$T/HEAD/src $PY "$COST" --steps 20 --batch-size 128 --models $M --work-dir "$W" --bench-dir "$ROOT/benchmarks" --label "$NEW" \
  --json "$R/cdsr_cost_afk_b128.json"
PYTHONPATH=$T/$PREV/src $PY "$COST" --steps 40 --batch-size 32 --models $M --work-dir "$W" --bench-dir "$ROOT/benchmarks" --label "$PREV" \
  --fused-adam --json "$R/cdsr_cost_afk_prev_fused.json"
echo "=== end $(date -u +%T) load $(cat /proc/loadavg)"
