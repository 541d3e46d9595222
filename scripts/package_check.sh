#!/usr/bin/env bash
# Proves the package as a new user gets it (called by .ci/run):
#   1. build the wheel and the sdist from a copy of this checkout's files;
#   2. a fresh virtual environment outside the checkout, whose dependencies are those of
#      ./.venv (a .pth line: torch 2.11 and the rest are not downloaded again), with the wheel
#      installed --no-deps; `pip check` there proves the wheel's pins (torch==2.11.0, ...) hold;
#   3. `speakerops init proj && cd proj && speakerops demo` in a temporary folder, checking the
#      summary, the registered version and that the code that ran is the wheel's, not the
#      checkout's.
# SPEAKEROPS_PACKAGE_DEMO: Hydra overrides for a smaller demo (default: the full demo, ~2.5 min
# on 2 idle cores; a smaller preset's tiny model may be refused by the gate, which is accepted).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
export DVC_NO_ANALYTICS=1 DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true PIP_DISABLE_PIP_VERSION_CHECK=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
bash scripts/install.sh
PY="$REPO/.venv/bin/python"
WORK=$(mktemp -d /tmp/speakerops-package.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
t0=$(date +%s)
echo "package: building the wheel and the sdist"
# from a copy of the checkout's files (tracked and untracked, not git-ignored): the build writes
# nothing (build/, speakerops.egg-info) into the checkout, where .ci/run's tests run meanwhile
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$WORK/src"
"$PY" -m build --no-isolation --outdir "$WORK/dist" "$WORK/src" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
WHEEL=$(ls "$WORK"/dist/speakerops-*.whl)
SDIST=$(ls "$WORK"/dist/speakerops-*.tar.gz)
for member in speakerops/conf/config.yaml speakerops/conf/model/ecapa_small.yaml \
  speakerops/conf/registry/policy.yaml speakerops/templates/dvc.yaml speakerops/cli/project.py; do
  "$PY" -c "import sys, zipfile; sys.exit(0 if sys.argv[2] in zipfile.ZipFile(sys.argv[1]).namelist() else 1)" \
    "$WHEEL" "$member" || { echo "package: $member missing from $WHEEL"; exit 1; }
done
tar tzf "$SDIST" >"$WORK/sdist.txt"; grep -q "/conf/config.yaml$" "$WORK/sdist.txt" || { echo "package: conf/ missing from $SDIST"; exit 1; }

echo "package: a fresh venv with the wheel (dependencies from ./.venv, torch not downloaded)"
BASE=$("$PY" -c "import sys; print(sys._base_executable)")
"$BASE" -m venv "$WORK/venv"
DEPS=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
SITE=$("$WORK/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$DEPS" >"$SITE/speakerops-deps.pth"
"$WORK/venv/bin/python" -m pip install -q --no-deps --no-index "$WHEEL"
# the wheel's requirements (torch==2.11.0, ...) hold there; resemblyzer's two --no-deps skips are
# the only unmet ones allowed (as scripts/install.sh)
unmet=$("$WORK/venv/bin/python" -m pip check 2>&1 \
  | grep -v -E '^resemblyzer 0\.1\.4 requires (typing|webrtcvad), which is not installed\.$' \
  | grep -v -E '^No broken requirements found\.$' || true)
[ -z "$unmet" ] || { echo "package: pip check in the fresh venv: $unmet"; exit 1; }
"$WORK/venv/bin/python" - "$WORK/venv" <<'PYCHECK'
import sys, speakerops, torch
assert speakerops.__file__.startswith(sys.argv[1]), f"speakerops imported from {speakerops.__file__}"
assert torch.__version__.startswith("2.11.0"), torch.__version__
PYCHECK

echo "package: speakerops init proj && cd proj && speakerops demo (in $WORK)"
mkdir -p "$WORK/home"
cd "$WORK/home"
export XDG_CONFIG_HOME="$WORK/config"   # init's master key goes here, not into ~/.config
export PATH="$WORK/venv/bin:$PATH"
unset SPEAKEROPS_CONF MLFLOW_TRACKING_URI
speakerops init proj >/dev/null
cd proj
rc=0
# shellcheck disable=SC2086
speakerops demo ${SPEAKEROPS_PACKAGE_DEMO:-} | tee "$WORK/demo.log" || rc=$?
# the full demo's gate passes (exit 0); a smaller preset's tiny model may be refused (exit 1)
if [ "$rc" -ne 0 ] && { [ -z "${SPEAKEROPS_PACKAGE_DEMO:-}" ] || [ "$rc" -ne 1 ]; }; then
  echo "package: speakerops demo exited $rc"; exit 1
fi
grep -q "speakerops demo summary" "$WORK/demo.log"
grep -q "Registry: speaker-encoder version 1" "$WORK/demo.log"
test -f registry/mlflow.db
echo "package: OK ($(($(date +%s) - t0)) s: wheel + sdist built, wheel installed in a fresh venv, init + demo outside the checkout)"
