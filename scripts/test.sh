#!/usr/bin/env bash
# The README's test command: install (idempotent), lint, then the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/lint-imports --no-cache  # the import contracts of pyproject.toml (docs/ARCHITECTURE.md)
exec .venv/bin/python -m pytest "$@"
