#!/usr/bin/env bash
# Idempotent install into ./.venv: creates it when missing and (re)installs only when
# pyproject.toml changed since the last successful install. Source it or run it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.speakerops-installed"
# resemblyzer (the GE2E weights `speakerops models import source=resemblyzer` reads) installs
# with --no-deps: its metadata wants the `typing` backport and the source-only `webrtcvad`
# (the `[pretrained]` extra brings webrtcvad-wheels, the same module, and librosa instead).
RESEMBLYZER="resemblyzer==0.1.4"
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
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
# the test command's extras: dev, pretrained (resemblyzer's import needs), peer (speechbrain);
# torch's pin above is in pyproject's dependencies, so pip must keep it while adding them
pip_install -e ".[dev,pretrained,peer]"
pip_install --no-deps "$RESEMBLYZER"
"$VENV/bin/python" - <<'PYCHECK'
import torch, torchaudio
assert torch.__version__.startswith("2.11.0"), f"torch {torch.__version__} was installed instead of 2.11.0"
assert torchaudio.__version__.startswith("2.11.0"), torchaudio.__version__
import resemblyzer, speechbrain  # noqa: F401  (the importers' sources import)
PYCHECK
# pip check: the only unmet requirements allowed are the two resemblyzer's --no-deps skips
# (`typing`, a backport for Python < 3.5; `webrtcvad`, provided by webrtcvad-wheels)
unmet=$("$VENV/bin/python" -m pip check 2>&1 | grep -v -E '^resemblyzer 0\.1\.4 requires (typing|webrtcvad), which is not installed\.$' | grep -v -E '^No broken requirements found\.$' || true)
if [ -n "$unmet" ]; then
  echo "speakerops: pip check found broken requirements:" >&2
  echo "$unmet" >&2
  exit 1
fi
echo "$want" > "$STAMP"
echo "speakerops: installed ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
