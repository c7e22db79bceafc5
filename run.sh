#!/usr/bin/env bash
# Container / local entry point: bash run.sh [--input_path FILE] [--output_dir DIR] [--config NAME|PATH] [...]
# Every option of run.py is accepted; without --input_path it runs the bundled sample split.
set -euo pipefail
cd "$(dirname "$0")"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
args=("$@")
case " $* " in
  *" --input_path"*) ;;
  *) args+=(--input_path data/sample/tasks.json) ;;
esac
exec "$PY" run.py "${args[@]}"
