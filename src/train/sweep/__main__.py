"""`python -m speakerops.train.sweep --worker i --workers N [--parent-run-id R] -- overrides`:
one sweep worker process (started by `speakerops sweep` when `sweep.n_jobs` > 1)."""

import sys

from speakerops.train.sweep.workers import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
