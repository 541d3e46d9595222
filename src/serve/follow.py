"""Keeping one process's identification index equal to the template store (the truth).

With ``serve.workers > 1`` every worker process has its own in-memory
:class:`~.index.TemplateIndex`, and an enroll or delete is served by one of them. Each write
bumps the tenant's generation in the store (:mod:`.store_sync`); before an identification a
worker reads that one number and, when it moved past what its index has seen, applies only
the templates written and the speakers erased since (an incremental reload, in generation
order). Verification reads the claimed speaker's template from the store on every request, so
it needs no index.
"""

from __future__ import annotations

import sys
import threading

from speakerops.serve.index import TemplateIndex
from speakerops.serve.store import TemplateStore


def _report(bad: list[str]) -> None:
    for message in bad:
        print(f"speakerops serve: not indexed: {message}", file=sys.stderr, flush=True)


class StoreFollower:
    """The store's generations as this process's index has seen them."""

    def __init__(self, store: TemplateStore, index: TemplateIndex) -> None:
        self.store, self.index = store, index
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def rebuild(self) -> int:
        """The whole index from the store; returns the templates indexed."""
        with self._lock:
            seen = self.store.generations()  # first: a write meanwhile is read again later
            templates, bad = self.store.all_templates()
            _report(bad)
            n = self.index.rebuild(templates)
            self._seen = seen
            return n

    def follow(self, tenant: str) -> int:
        """Apply what other processes wrote to `tenant` since the index last looked; returns
        the number of changes applied (0: the index was current)."""
        now = self.store.generation(tenant)
        if now == self._seen.get(tenant, 0):
            return 0
        with self._lock:  # one reader applies; the others then find it current
            since = self._seen.get(tenant, 0)
            if now == since:
                return 0
            generation, events, bad = self.store.changes_since(tenant, since)
            _report(bad)
            for event in events:
                if isinstance(event, str):
                    self.index.remove(tenant, event)
                else:
                    self.index.upsert(event)
            self._seen[tenant] = generation
            return len(events)
