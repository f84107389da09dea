#!/usr/bin/env bash
# The paper's partial-channel table on NAS-Bench-201 CIFAR-10: DrNAS with k = 1, 2, 4, 8
# (train_search.py --k K) and progressive learning (train_search_progressive.py, its
# default stages: k 4 then 2, ops 5 then 3), 4 seeds each, run one after another, then
# aggregated (test accuracy, peak memory) into experiments/partial_channels/table.md.
#
#   API_PATH=/path/NAS-Bench-201-v1_0-e61699.pth scripts/reproduce/partial_channels.sh
#
# Environment: API_PATH (required), SEEDS ("0 1 2 3"), KS ("1 2 4 8"), EPOCHS (--epochs of
# the k searches, default 100; for the progressive search, --train_epochs EPOCHS EPOCHS, i.e.
# per stage), PROGRESSIVE_ARGS (more flags for train_search_progressive.py only, e.g.
# "--arch_start_epoch 1" for a smoke run; they come last, so they win), DATA (--data),
# EXTRA_ARGS (flags for every search), PYTHON (default: python), DRY_RUN=1 prints the
# commands without running them.
# Finished runs are skipped; a run with a checkpoint but unfinished is resumed.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"  # the environment above; cd 201-space; run, search, aggregate

KS="${KS:-1 2 4 8}"
DATASET=cifar10
OUT=../experiments/partial_channels

for seed in $SEEDS; do
  for k in $KS; do
    search train_search.py "$OUT/$DATASET-k$k-seed$seed" --dataset "$DATASET" --method dirichlet \
      --k "$k" --seed "$seed" --api_path "$API_PATH" ${EPOCHS:+--epochs "$EPOCHS"}
  done
  # shellcheck disable=SC2086
  search train_search_progressive.py "$OUT/$DATASET-progressive-seed$seed" --dataset "$DATASET" \
    --method dirichlet --seed "$seed" --api_path "$API_PATH" ${EPOCHS:+--train_epochs "$EPOCHS" "$EPOCHS"} ${PROGRESSIVE_ARGS:-}
done
aggregate "$OUT"
