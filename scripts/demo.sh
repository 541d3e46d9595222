#!/usr/bin/env bash
# The README's demo command: install (idempotent), then the whole lifecycle on synthetic data.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
# the master key that protects biometric data at rest (created once; kept when it exists)
.venv/bin/speakerops keys init
exec .venv/bin/speakerops demo "$@"
