"""Following the champion: ``POST /admin/reload`` and, with ``serve.reload.poll_s > 0``, a poll.

Each resolves ``serve.model`` (``models:/speaker-encoder@champion``) to a version; when it is
another one than the served model, that version is loaded by its number (the alias may move
again meanwhile), a new :class:`~speakerops.serve.engine.Service` is built on it (sharing the
store, keyring, metrics and audit trail) and put in ``app.state.service`` in one assignment.
A route reads ``app.state.service`` once, when its request starts, so a request in flight
finishes on the model it started with and none is dropped; the next one gets the new model.
A failed load leaves the old model serving. Templates of the old version are then stale
(``/metrics``: ``speakerops_stale_templates``) until ``speakerops templates migrate``; an admin
reload that finds the model unchanged re-reads the store into the identification index (what
a migration, run by another process, changed).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from speakerops.core.uris import parse_model_uri
from speakerops.registry.package import load_encoder, resolve_model_version
from speakerops.serve.errors import ServeError

log = logging.getLogger(__name__)


def load_model(model_uri: str, tracking_uri: str) -> tuple[Any, str, str]:
    """(encoder, name, version) of `model_uri`, an alias resolved once and loaded by number."""
    name, version = resolve_model_version(model_uri, tracking_uri=tracking_uri)
    uri = f"models:/{name}/{version}" if parse_model_uri(model_uri).is_registry else model_uri
    return load_encoder(uri, tracking_uri=tracking_uri), str(name), str(version)


class Reloader:
    """Swaps the served model of `state` (``state.service``) when ``serve.model`` moves."""

    def __init__(self, state: Any, tracking_uri: str) -> None:
        self.state, self.tracking_uri = state, tracking_uri
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reload(self, *, audit: bool = True, **who: Any) -> dict[str, Any]:
        """Check ``serve.model`` and swap in its version when it moved; returns what happened.
        Audited (``serve.reload``, with `who`) unless `audit` is false and nothing changed."""
        with self._lock:
            old = self.state.service
            model = old.settings.model
            before = {"model_name": old.model_name, "model_version": old.model_version}
            if not parse_model_uri(model).is_registry:
                out = {**before, "changed": False, "reason": f"serve.model={model} is no alias"}
            else:
                try:
                    name, version = resolve_model_version(model, tracking_uri=self.tracking_uri)
                    if (name, version) == (old.model_name, old.model_version):
                        out = {**before, "changed": False, "reason": "already served"}
                        if audit:  # an admin call re-reads the store (after `templates migrate`)
                            out["indexed"] = old.rebuild_index()
                    else:
                        encoder, name, version = load_model(model, self.tracking_uri)
                        new = old.with_model(encoder, name, version)
                        if old.spoof is not None:  # `pair`: the new version's countermeasure
                            new.spoof = old.spoof.following(old.settings, self.tracking_uri, (name, version))  # fmt: skip
                        self.state.service = new
                        out = {"model_name": name, "model_version": version, "changed": True}
                        out["model_version_before"] = old.model_version
                except ServeError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a failed load keeps the old model
                    raise ServeError(
                        500,
                        "reload.failed",
                        f"serve.model={model}: cannot load it ({exc}); still serving "
                        f"{old.model_name} version {old.model_version}",
                    ) from exc
            counts = old.store.counts_by_version()
            served = (out["model_name"], out["model_version"])
            out["stale_templates"] = sum(n for key, n in counts.items() if key != served)
            if audit or out["changed"]:
                old.audit.record("serve.reload", **who, **out)
            return out

    def start(self, poll_s: float) -> None:
        """Poll every `poll_s` seconds in a daemon thread (no-op for 0)."""
        if poll_s <= 0 or self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(poll_s):
                try:
                    self.reload(audit=False, trigger="poll")
                except ServeError as exc:
                    log.warning("speakerops serve: reload poll: %s", exc.message)

        self._thread = threading.Thread(target=loop, name="speakerops-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
