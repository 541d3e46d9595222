"""bench/chaos.py runs in the suite (quick mode): nothing gets through, nothing is lost.

The promotion cases need a registry with two registered models: tests/test_promote_journal.py
runs them on its world (a real `speakerops promote` SIGKILLed at every step; bench's
promote + rollback + drift case), so this run leaves them out."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


def test_fault_and_abuse_suite_refuses_everything_and_loses_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "chaos.py"), "--quick", "--skip", "promotion:"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    total = next(ln for ln in proc.stdout.splitlines() if ln.startswith("TOTAL")).split()
    tried, refused, survived, wrong, lost = map(int, total[1:6])
    assert wrong == 0 and lost == 0 and tried == refused + survived and refused > 200
    for case in ("model files:", "ingest: a batch of bad files", "audio: hypothesis"):
        row = next(ln for ln in proc.stdout.splitlines() if ln.startswith(case)).split()
        assert int(row[-5]) > 0, row  # each of the new cases refused something, by name
