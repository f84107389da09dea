#!/usr/bin/env bash
# The paper's NAS-Bench-201 table: DrNAS (dirichlet) and the same-harness baselines (darts,
# snas, gdas, and pcdarts with PC-DARTS's own settings), searched on CIFAR-10, CIFAR-100 and
# ImageNet16-120 with 4 seeds each (60 searches, run one after another), then aggregated into
# experiments/nb201_table/table.md.
# The CIFAR-10 DrNAS and DARTS runs also record the exploration of figure 1
# (--sample_archs 100) and the Hessian eigenvalue of figures 4-5 (--hessian_freq 5).
#
#   API_PATH=/path/NAS-Bench-201-v1_0-e61699.pth scripts/reproduce/nb201_table.sh
#
# Environment: API_PATH (required), SEEDS ("0 1 2 3"), EPOCHS (script default: 100; 50 for pcdarts),
# DATASETS ("cifar10 cifar100 imagenet16-120"), METHODS ("dirichlet darts snas gdas pcdarts"),
# DATA (dataset folder, passed as --data), EXTRA_ARGS (more flags for every search, e.g.
# "--device cuda:1"), PYTHON (default: python; or wrap: scripts/with_venv.sh scripts/reproduce/...),
# SAMPLE_ARCHS (100) and HESSIAN_FREQ (5) for the CIFAR-10 dirichlet and darts runs,
# DRY_RUN=1 prints the commands without running them. Finished runs (results.json with
# "finished": true) are skipped; a run with a checkpoint but unfinished is resumed.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"  # the environment above; cd 201-space; run, search, aggregate

DATASETS="${DATASETS:-cifar10 cifar100 imagenet16-120}"
METHODS="${METHODS:-dirichlet darts snas gdas pcdarts}"
OUT=../experiments/nb201_table

for dataset in $DATASETS; do
  for method in $METHODS; do
    for seed in $SEEDS; do
      extra=()
      if [ "$dataset" = cifar10 ] && { [ "$method" = dirichlet ] || [ "$method" = darts ]; }; then
        extra=(--sample_archs "${SAMPLE_ARCHS:-100}" --hessian_freq "${HESSIAN_FREQ:-5}")
      fi
      search train_search.py "$OUT/$dataset-$method-seed$seed" --dataset "$dataset" --method "$method" \
        --seed "$seed" --api_path "$API_PATH" ${extra[@]+"${extra[@]}"} ${EPOCHS:+--epochs "$EPOCHS"}
    done
  done
done
aggregate "$OUT"
