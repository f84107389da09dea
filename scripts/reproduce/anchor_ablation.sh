#!/usr/bin/env bash
# The paper's anchor-regulariser ablation on NAS-Bench-201 CIFAR-10: DrNAS with lambda
# (--reg_scale) in 0 5e-4 1e-3 5e-3 1e-2 1e-1 1, 4 seeds each, run one after another, then
# aggregated into experiments/anchor_ablation/table.md.
#
#   API_PATH=/path/NAS-Bench-201-v1_0-e61699.pth scripts/reproduce/anchor_ablation.sh
#
# Environment: API_PATH (required), SEEDS ("0 1 2 3"), LAMBDAS ("0 5e-4 1e-3 5e-3 1e-2 1e-1 1"),
# REG_TYPE (l2, the default, or kl), EPOCHS (default 100), DATA (--data), EXTRA_ARGS (flags
# for every search), PYTHON (default: python), DRY_RUN=1 prints the commands without
# running them. Finished runs are skipped; a run with a checkpoint but unfinished is resumed.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"  # the environment above; cd 201-space; run, search, aggregate

LAMBDAS="${LAMBDAS:-0 5e-4 1e-3 5e-3 1e-2 1e-1 1}"
REG_TYPE="${REG_TYPE:-l2}"
DATASET=cifar10
OUT=../experiments/anchor_ablation

for lambda in $LAMBDAS; do
  for seed in $SEEDS; do
    tag="lambda$lambda"; [ "$REG_TYPE" = l2 ] || tag="$REG_TYPE-$tag"
    search train_search.py "$OUT/$DATASET-$tag-seed$seed" --dataset "$DATASET" --method dirichlet \
      --seed "$seed" --reg_type "$REG_TYPE" --reg_scale "$lambda" --api_path "$API_PATH" \
      ${EPOCHS:+--epochs "$EPOCHS"}
  done
done
aggregate "$OUT"
