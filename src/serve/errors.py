"""The one error type of the service: an HTTP status, a machine-readable code and a message."""

from __future__ import annotations

from typing import Any


class ServeError(Exception):
    """A refused request: ``status`` (4xx/5xx), ``code`` (e.g. ``quality.speech``), a message
    naming the file, value and limit, and optional details (check, value, limit...)."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}
