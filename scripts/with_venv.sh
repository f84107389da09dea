#!/usr/bin/env bash
# Runs a command inside the project's virtual environment, creating it the first time
# (a few minutes: PyTorch is large) and reusing it while requirements.txt and
# pyproject.toml are unchanged. Usage: scripts/with_venv.sh COMMAND [ARGS...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DRNAS_VENV:-$root/.venv}"
stamp="$venv/.drnas-requirements"
want="$(cat "$root/requirements.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python=$(command -v python3.11 || command -v python3)
  echo "setting up the virtual environment in $venv (the first time takes a few minutes)" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/requirements.txt"
  # xautodl (the NAS-Bench-201 authors' networks, for a test) declares numpy<=1.19.5, which
  # Python 3.11 cannot build; the modules the test uses run on today's numpy
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps xautodl==1.0.0
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$root"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
exec "$@"
