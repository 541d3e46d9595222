#!/usr/bin/env bash
# Drift monitoring, both sides, on the champion left by scripts/demo.sh (run that first):
# a same-distribution production batch (no drift, no ticket), then a shifted-channel batch
# (drift, one ticket, a DVC retraining run and its gate verdict).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
# the master key that protects biometric data at rest (created once; kept when it exists)
.venv/bin/speakerops keys init
exec .venv/bin/speakerops drift-demo "$@"
