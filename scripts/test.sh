#!/usr/bin/env bash
# The README's test command: install (idempotent), lint, then the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/lint-imports --no-cache  # the import contracts of pyproject.toml (docs/ARCHITECTURE.md)
# two pytest-xdist workers (pyproject's [dev]), each test file whole on one of them (its module
# fixtures are built once), the slowest files first (tests/conftest.py, SLOW_FIRST);
# SPEAKEROPS_TEST_WORKERS=0 runs the suite in this process; one torch thread per worker
# (tests that need more set it themselves)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
exec .venv/bin/python -m pytest -n "${SPEAKEROPS_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
