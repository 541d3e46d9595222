"""`speakerops serve` in a child process on 127.0.0.1 (a free port), ready when ``/readyz``
answers 200: what the drift demo's API variant and ``bench/bench_serve.py`` talk to.

    with ServerProcess(overrides, log_file=tmp / "server.log") as server:
        Client(server.url, tenant, token).verify(...)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """The service in a subprocess (``python -m speakerops serve <overrides>``); ``overrides``
    must not set ``serve.host``/``serve.port`` (a free loopback port is chosen)."""

    def __init__(
        self,
        overrides: list[str],
        *,
        log_file: str | Path,
        threads: int | None = None,
        ready_timeout_s: float = 180.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.overrides = [*overrides, "serve.host=127.0.0.1", f"serve.port={self.port}"]
        if threads is not None:
            self.overrides.append(f"runtime.threads={int(threads)}")
        self.log_file = Path(log_file)
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self._log: IO | None = None

    def start(self) -> ServerProcess:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "speakerops", "serve", *self.overrides],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:  # a bounded poll, not a timing assumption
            if self.proc.poll() is not None:
                self.stop()
                tail = self.log_file.read_text()[-3000:]
                raise RuntimeError(f"speakerops serve exited {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"speakerops serve not ready after {self.ready_timeout_s:g} s (log {self.log_file})"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ServerProcess", "free_port"]
