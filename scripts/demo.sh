#!/usr/bin/env bash
# The README's demo command: install (idempotent), then the whole lifecycle on synthetic data.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
exec .venv/bin/speakerops demo "$@"
