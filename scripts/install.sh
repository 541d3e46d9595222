#!/usr/bin/env bash
# Idempotent install into ./.venv: creates it when missing and (re)installs only when
# pyproject.toml changed since the last successful install. Source it or run it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.speakerops-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
export DVC_NO_ANALYTICS=1 DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true PIP_DISABLE_PIP_VERSION_CHECK=1
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import speakerops" 2>/dev/null; then
  exit 0
fi
echo "speakerops: installing into $VENV (torch 2.11 + torchaudio 2.11, Lightning, MLflow, DVC, Evidently, Optuna; a few minutes the first time)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# Downloads resume and retry: a dropped connection halfway through torch's 530 MB wheel
# must not fail a fresh install (pip's cache keeps what finished for the next attempt).
pip_install() {
  local attempt
  for attempt in 1 2 3; do
    "$VENV/bin/python" -m pip install -q --retries 10 --timeout 120 "$@" "${RESUME[@]}" && return 0
    echo "speakerops: pip install $* failed (attempt $attempt of 3); retrying" >&2
    sleep $((attempt * 10))
  done
  return 1
}
RESUME=()
pip_install --upgrade pip
# pip >= 25.1 resumes an interrupted download instead of starting it again
RESUME=(--resume-retries 20)
# torch and torchaudio first, pinned together: nothing later may swap torch.
pip_install "torch==2.11.0" "torchaudio==2.11.0"
pip_install -e ".[dev]"
"$VENV/bin/python" - <<'PYCHECK'
import torch, torchaudio
assert torch.__version__.startswith("2.11.0"), f"torch {torch.__version__} was installed instead of 2.11.0"
assert torchaudio.__version__.startswith("2.11.0"), torchaudio.__version__
PYCHECK
echo "$want" > "$STAMP"
echo "speakerops: installed ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
