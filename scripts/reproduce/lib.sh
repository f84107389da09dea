# Shared by the reproduction scripts (nb201_table.sh, partial_channels.sh,
# anchor_ablation.sh); source it from one of them, it is not run on its own:
#
#   set -euo pipefail
#   source "$(dirname "$0")/lib.sh"
#
# It reads the environment they all take: API_PATH (required) and DATA (optional) are
# made absolute, PYTHON defaults to python, SEEDS to "0 1 2 3"; then it changes into
# 201-space/, where the searches run. Functions:
#
#   run CMD...                 run CMD, or with DRY_RUN=1 print it (shell-quoted) instead
#   search SCRIPT DIR FLAGS... one search, output in DIR: skipped when DIR/results.json says
#                              "finished": true, resumed when DIR/checkpoint.pt exists; runs
#                              $PYTHON SCRIPT FLAGS --output_dir DIR [--resume DIR]
#                              [--data $DATA] $EXTRA_ARGS (EXTRA_ARGS last, so they win)
#   aggregate DIR              scripts/aggregate.py over the runs below DIR into DIR/table.md,
#                              then print the table (unless DRY_RUN=1)

API_PATH="${API_PATH:?set API_PATH to the NAS-Bench-201 file}"
case "$API_PATH" in /*) ;; *) API_PATH="$PWD/$API_PATH" ;; esac
if [ -n "${DATA:-}" ]; then case "$DATA" in /*) ;; *) DATA="$PWD/$DATA" ;; esac; fi
cd "$(dirname "${BASH_SOURCE[0]}")/../../201-space"

PYTHON="${PYTHON:-python}"
SEEDS="${SEEDS:-0 1 2 3}"

run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}

search() {  # search SCRIPT OUTPUT_DIR FLAGS...: skip a finished run, resume an unfinished one
  local script="$1" dir="$2"; shift 2
  local resume=()
  if [ -f "$dir/results.json" ] && grep -q '"finished": true' "$dir/results.json"; then
    echo "# finished, skipped: $dir"; return 0
  fi
  [ -f "$dir/checkpoint.pt" ] && resume=(--resume "$dir")
  # shellcheck disable=SC2086
  run "$PYTHON" "$script" "$@" --output_dir "$dir" ${resume[@]+"${resume[@]}"} ${DATA:+--data "$DATA"} ${EXTRA_ARGS:-}
}

aggregate() {  # aggregate OUT: the table of every run below OUT, in OUT/table.md
  local out="$1"
  run "$PYTHON" ../scripts/aggregate.py "$out" --recursive --out "$out/table.md"
  [ "${DRY_RUN:-0}" = 1 ] || cat "$out/table.md"
}
