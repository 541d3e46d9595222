"""The identification index: every tenant's current-version templates in memory, searched
exactly up to ``serve.identify.index.exact_max`` templates and through an approximate index
above it.

The template store stays the source of truth: the index is rebuilt from it when the service
starts (:meth:`TemplateIndex.rebuild`) and follows each enroll (:meth:`~TemplateIndex.upsert`)
and delete (:meth:`~TemplateIndex.remove`). It holds the L2-normalized template vectors (in
memory only, never written), each template's AS-norm enrollment statistics (the cohort mean
and standard deviation of its top-N cosines, computed once at insertion instead of on every
request) and its mean enrollment duration (quality-aware calibrations need it).

Search for one probe:

- **exact** (``n <= exact_max``): every template is scored as verification scores one pair
  (raw cosine, AS-norm, calibrated LLR), ranked by LLR;
- **approximate** (``n > exact_max``): a faiss inverted-file index (``IndexIVFFlat``, inner
  product, ``nlist`` lists, ``nprobe`` of them scanned per query) proposes the ``candidates``
  best templates by the AS-norm score itself (an inner product of augmented vectors, see
  :mod:`.ann_rows`; ranking by raw cosine instead missed the exact top-1 for
  most probes whenever templates' cohort statistics differ); those are re-scored exactly as
  above, so the LLRs reported are the ones verification would give. ``bench/bench_serve.py``
  reports its recall@1 against exact search.

The IVF lists are trained (k-means) on the templates present when the tenant first crosses
``exact_max``, and retrained when the tenant has grown 4x since; faiss removes deleted ids
from its lists at once (``remove_ids``), so a deleted speaker is never proposed again. At
start-up (:meth:`~TemplateIndex.rebuild`) the lists are trained before the service answers;
when an enrollment crosses a threshold they are trained in a background thread instead, off
the request path: exact search (or the previous lists, which take the new templates) answers
meanwhile, and the enrollments and deletions made during the training are replayed onto the
new lists before they are swapped in.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from speakerops.eval.scoring import Scorer, asnorm, cohort_stats
from speakerops.serve.ann_rows import ann_query, ann_rows, row_lengths

RETRAIN_GROWTH = 4  # retrain the IVF lists when a tenant has grown this much since training
MAX_AUTO_LISTS = 1024  # nlist 0: 4 * sqrt(n) lists, at least 16, at most this
TRAIN_POINTS_PER_LIST = 64  # k-means sample per list (bounded training time at a million)
MIN_POINTS_PER_LIST = 39  # fewer lists than n / 39: faiss's k-means wants that many points each
BOUND_HEADROOM = 1.25  # the approximate index's row-length bound: this x the longest at training
_CHUNK = 50_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexSettings:
    exact_max: int  # templates per tenant searched exactly; above: the approximate index
    candidates: int  # approximate: templates proposed by cosine and re-scored exactly
    nlist: int  # IVF lists (0: 4 * sqrt(n) at training time, 16 .. MAX_AUTO_LISTS)
    nprobe: int  # IVF lists scanned per query


@dataclass
class Hit:
    speaker_id: str
    speaker_key: str
    raw: float
    norm: float
    llr: float


@dataclass
class _Tenant:
    dim: int
    vecs: np.ndarray = field(init=False)  # [capacity, D] float32, unit rows
    mu: np.ndarray = field(init=False)  # AS-norm enrollment mean per slot
    sd: np.ndarray = field(init=False)
    dur: np.ndarray = field(init=False)
    version: np.ndarray = field(init=False)  # template version per slot
    alive: np.ndarray = field(init=False)
    keys: list[str | None] = field(default_factory=list)
    ids: list[str | None] = field(default_factory=list)
    slot: dict[str, int] = field(default_factory=dict)
    free: list[int] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)  # keys of templates of another model version
    ivf: Any = None
    bound: float | None = None  # the row-length bound M of the approximate index
    trained_at: int = 0
    building: list[tuple[bool, int]] | None = None  # a background build's replay: (added, slot)

    def __post_init__(self) -> None:
        self.vecs = np.zeros((0, self.dim), np.float32)
        self.mu, self.sd, self.dur = (np.zeros(0) for _ in range(3))
        self.version = np.zeros(0, np.int64)
        self.alive = np.zeros(0, bool)

    def __len__(self) -> int:
        return len(self.slot)

    def _grow(self, need: int) -> None:
        cap = len(self.alive)
        if need <= cap:
            return
        new = max(need, 2 * cap, 64)
        pad = new - cap
        self.vecs = np.concatenate([self.vecs, np.zeros((pad, self.dim), np.float32)])
        self.mu, self.sd, self.dur = (np.concatenate([a, np.zeros(pad)]) for a in (self.mu, self.sd, self.dur))  # fmt: skip
        self.version = np.concatenate([self.version, np.zeros(pad, np.int64)])
        self.alive = np.concatenate([self.alive, np.zeros(pad, bool)])
        self.free.extend(range(new - 1, cap - 1, -1))  # lowest slot first (pop from the end)
        self.keys.extend([None] * pad)
        self.ids.extend([None] * pad)


class TemplateIndex:
    """The in-memory identification index of one model version (see the module docstring)."""

    def __init__(
        self, settings: IndexSettings, scorer: Scorer, model_name: str, model_version: str
    ) -> None:
        self.settings, self.scorer = settings, scorer
        self.model_name, self.model_version = model_name, model_version
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.RLock()
        self._builds: dict[str, threading.Thread] = {}

    # -- building --------------------------------------------------------------------------
    def _stats(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        norm = self.scorer.normalization
        if norm.method != "asnorm":
            return np.zeros(len(vecs)), np.ones(len(vecs))
        parts = [
            cohort_stats(vecs[a : a + _CHUNK], norm.cohort, norm.top_n)
            for a in range(0, len(vecs), _CHUNK)
        ]  # in chunks: the [rows, cohort] similarity matrix stays small at a million templates
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def rebuild(self, templates: Any) -> int:
        """Replace the index with `templates` (an iterable of :class:`~.store.Template`, e.g.
        every template in the store); returns the number indexed for this model version."""
        with self._lock:
            self._tenants = {}
            by_tenant: dict[str, list] = {}
            for tpl in templates:
                by_tenant.setdefault(tpl.tenant, []).append(tpl)
            for tenant, tpls in by_tenant.items():
                current = [t for t in tpls if self._current(t)]
                t = self._tenant(tenant, tpls[0].embeddings.shape[1])
                t.stale = {x.speaker_key for x in tpls if not self._current(x)}
                if current:
                    self._insert_many(
                        t,
                        np.stack([x.vector for x in current]),
                        [x.speaker_key for x in current],
                        [x.speaker_id for x in current],
                        [x.duration_s for x in current],
                        [x.template_version for x in current],
                    )
                self._sync_ann(t, rebuild=True)
            return sum(len(t) for t in self._tenants.values())

    def add_vectors(
        self,
        tenant: str,
        vecs: np.ndarray,
        keys: list[str],
        speaker_ids: list[str],
        durations: np.ndarray | list[float],
    ) -> None:
        """Bulk insert of normalized vectors (new keys only; the benchmark's synthetic sets)."""
        vecs = np.asarray(vecs, np.float32)
        with self._lock:
            t = self._tenant(tenant, vecs.shape[1])
            self._insert_many(
                t, vecs, list(keys), list(speaker_ids), list(durations), [1] * len(keys)
            )
            self._sync_ann(t, rebuild=True)

    def _current(self, tpl: Any) -> bool:
        return (tpl.model_name, tpl.model_version) == (self.model_name, self.model_version)

    def _tenant(self, tenant: str, dim: int) -> _Tenant:
        t = self._tenants.get(tenant)
        if t is None:
            t = self._tenants[tenant] = _Tenant(int(dim))
        elif t.dim != dim:
            raise ValueError(
                f"tenant {tenant!r}: a {dim}-dimensional template in an index of dimension {t.dim}"
            )
        return t

    def _insert_many(self, t, vecs, keys, ids, durations, versions) -> np.ndarray:
        unit = vecs / (np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12)
        t._grow(len(t) + len(keys))
        slots = np.array([t.free.pop() for _ in keys], np.int64)
        mu, sd = self._stats(unit)
        t.vecs[slots], t.mu[slots], t.sd[slots] = unit, mu, sd
        t.dur[slots], t.version[slots], t.alive[slots] = durations, versions, True
        for s, k, i in zip(slots.tolist(), keys, ids, strict=True):
            t.keys[s], t.ids[s], t.slot[k] = k, i, s
        return slots

    def _drop(self, t: _Tenant, key: str) -> int | None:
        s = t.slot.pop(key, None)
        if s is None:
            return None
        t.alive[s], t.keys[s], t.ids[s] = False, None, None
        t.free.append(s)
        return s

    def _due(self, t: _Tenant, rebuild: bool) -> bool:
        """Whether the tenant's approximate index must be (re)built; drops it at exact size."""
        n = len(t)
        if n <= self.settings.exact_max:
            t.ivf, t.trained_at = None, 0
            return False
        return rebuild or t.ivf is None or n > RETRAIN_GROWTH * t.trained_at

    def _sync_ann(self, t: _Tenant, *, rebuild: bool = False) -> None:
        """Build, retrain or drop the tenant's approximate index for its size, now."""
        if self._due(t, rebuild):
            slots = np.flatnonzero(t.alive)
            ivf, bound = self._train(t, slots)
            for a in range(0, len(slots), _CHUNK):  # rows made and added in chunks
                ivf.add_with_ids(self._rows(t, slots[a : a + _CHUNK], bound), slots[a : a + _CHUNK])
            t.ivf, t.bound, t.trained_at, t.building = ivf, bound, len(slots), None

    def _train(self, t: _Tenant, slots: np.ndarray) -> tuple[Any, float]:
        """Empty IVF lists trained (k-means) on the rows of `slots`, and their row bound."""
        train, bound, nlist = self._train_rows(t, slots)
        return self._fit(train, nlist), bound

    def _train_rows(self, t: _Tenant, slots: np.ndarray) -> tuple[np.ndarray, float, int]:
        """The k-means sample's rows (a seeded subset of `slots`), the row bound, the lists."""
        n = len(slots)
        bound = BOUND_HEADROOM * float(row_lengths(self._asnorm, t.sd[slots], t.mu[slots]).max())
        nlist = self.settings.nlist or min(MAX_AUTO_LISTS, max(16, int(4 * np.sqrt(n))))
        nlist = max(1, min(nlist, n // MIN_POINTS_PER_LIST))
        sample = slots
        if n > nlist * TRAIN_POINTS_PER_LIST:  # k-means on a seeded sample, as faiss would
            rng = np.random.default_rng(0)
            sample = np.sort(rng.choice(slots, nlist * TRAIN_POINTS_PER_LIST, replace=False))
        return self._rows(t, sample, bound), bound, nlist

    def _fit(self, train: np.ndarray, nlist: int) -> Any:
        quantizer = faiss.IndexFlatIP(train.shape[1])
        ivf = faiss.IndexIVFFlat(quantizer, train.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = 0  # the same lists for the same templates
        ivf.train(train)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # O(1) remove_ids
        ivf.nprobe = min(self.settings.nprobe, nlist)
        return ivf

    def _build_later(self, tenant: str, t: _Tenant) -> None:
        """Train new lists in a background thread (the caller holds the lock); at most one
        build per tenant at a time, the updates meanwhile are replayed before the swap."""
        if t.building is not None:
            return
        t.building = []
        slots = np.flatnonzero(t.alive)
        self._builds[tenant] = threading.Thread(
            target=self._build, args=(tenant, t, slots), name=f"ivf-{tenant}", daemon=True
        )
        self._builds[tenant].start()

    def _build(self, tenant: str, t: _Tenant, slots: np.ndarray) -> None:
        try:
            with self._lock:  # the sample is read locked, k-means runs unlocked
                train, bound, nlist = self._train_rows(t, slots)
            ivf = self._fit(train, nlist)
            for a in range(0, len(slots), _CHUNK):  # rows of the live templates, chunk by chunk
                with self._lock:
                    rows = self._rows(t, slots[a : a + _CHUNK], bound)
                ivf.add_with_ids(rows, slots[a : a + _CHUNK])
            with self._lock:
                if self._tenants.get(tenant) is not t or t.building is None:
                    return  # the index was rebuilt meanwhile
                for added, s in t.building:  # what enroll and delete did during the build
                    if added:
                        ivf.add_with_ids(self._rows(t, np.array([s]), bound), np.array([s]))
                    else:
                        ivf.remove_ids(np.array([s], np.int64))
                t.building = None
                if len(t) > self.settings.exact_max:
                    t.ivf, t.bound, t.trained_at = ivf, bound, len(slots)
                    if len(t) > RETRAIN_GROWTH * t.trained_at:
                        self._build_later(tenant, t)
        except Exception:  # noqa: BLE001 - exact search keeps answering; say why
            log.exception("speakerops serve: building the approximate index of %s failed", tenant)
            with self._lock:
                t.building = None

    def wait_builds(self, timeout_s: float = 600.0) -> bool:
        """Wait for background builds (tests, shutdown); True when none is left running."""
        for thread in list(self._builds.values()):
            thread.join(timeout_s)
        return not any(th.is_alive() for th in self._builds.values())

    # -- updates ---------------------------------------------------------------------------
    def upsert(self, tpl: Any) -> None:
        """Index a template just stored (enroll); a template of another model version only
        counts as stale. An older template version than the one indexed is ignored."""
        with self._lock:
            t = self._tenant(tpl.tenant, tpl.embeddings.shape[1])
            old = t.slot.get(tpl.speaker_key)
            if old is not None and t.version[old] > tpl.template_version:
                return  # a concurrent, later enrollment is already indexed
            self.remove(tpl.tenant, tpl.speaker_key)
            if not self._current(tpl):
                t.stale.add(tpl.speaker_key)
                return
            slots = self._insert_many(
                t, tpl.vector[None], [tpl.speaker_key], [tpl.speaker_id], [tpl.duration_s],
                [tpl.template_version],
            )  # fmt: skip
            if t.building is not None:
                t.building.append((True, int(slots[0])))
            if t.ivf is not None:  # the current lists take it (until new ones are ready)
                t.ivf.add_with_ids(self._rows(t, slots, t.bound), slots)
            if self._due(t, rebuild=False):  # trained off the request path
                self._build_later(tpl.tenant, t)

    def remove(self, tenant: str, speaker_key: str) -> bool:
        """Forget a speaker's template (delete); True when it was indexed."""
        with self._lock:
            t = self._tenants.get(tenant)
            if t is None:
                return False
            was_stale = speaker_key in t.stale
            t.stale.discard(speaker_key)
            s = self._drop(t, speaker_key)
            if s is None:
                return was_stale
            if t.ivf is not None:
                t.ivf.remove_ids(np.array([s], np.int64))
            if t.building is not None:
                t.building.append((False, s))
            if len(t) <= self.settings.exact_max:
                self._due(t, rebuild=False)  # back to exact search
            return True

    # -- reading ---------------------------------------------------------------------------
    def counts(self, tenant: str) -> tuple[int, int]:
        """(current-version templates, stale templates) of a tenant."""
        with self._lock:
            t = self._tenants.get(tenant)
            return (0, 0) if t is None else (len(t), len(t.stale))

    def approximate(self, tenant: str) -> bool:
        with self._lock:
            t = self._tenants.get(tenant)
            return t is not None and t.ivf is not None

    def search(
        self, tenant: str, probe: np.ndarray, duration_s: float, k: int, *, exact: bool = False
    ) -> list[Hit]:
        """The `k` best templates of `tenant` for a probe embedding, by calibrated LLR;
        ``exact=True`` scores every template whatever the size (the benchmark's reference)."""
        q = np.asarray(probe, np.float32).ravel()
        q = q / (np.linalg.norm(q) + 1e-12)
        with self._lock:  # held throughout: a slot freed by a delete is not reused meanwhile
            t = self._tenants.get(tenant)
            if t is None or not len(t):
                return []
            mu_t, sd_t = self._stats(q[None])
            if t.ivf is not None and not exact:
                m = min(max(self.settings.candidates, k), len(t))
                _, found = t.ivf.search(ann_query(self._asnorm, q, sd_t[0]), m)
                slots = found[0][found[0] >= 0]
                raw = (t.vecs[slots] @ q).astype(np.float64)
            else:  # every slot in one product (no copy of the matrix), then the live ones
                slots = np.flatnonzero(t.alive)
                raw = (t.vecs @ q)[slots].astype(np.float64)
            norm = self._normalize(raw, t.mu[slots], t.sd[slots], mu_t[0], sd_t[0])
            test_dur = np.full(len(norm), float(duration_s))
            llr = np.asarray(self.scorer.to_llr(norm, t.dur[slots], test_dur), np.float64)
            kk = min(k, len(llr))
            top = np.argpartition(-llr, kk - 1)[:kk] if kk < len(llr) else np.arange(len(llr))
            top = top[np.lexsort((slots[top], -llr[top]))]  # by LLR, ties by slot
            return [
                Hit(t.ids[s], t.keys[s], float(raw[i]), float(norm[i]), float(llr[i]))
                for i, s in zip(top.tolist(), slots[top].tolist(), strict=True)
            ]

    @property
    def _asnorm(self) -> bool:
        return self.scorer.normalization.method == "asnorm"

    def _rows(self, t: _Tenant, slots: np.ndarray, bound: float) -> np.ndarray:
        return ann_rows(self._asnorm, t.vecs[slots], t.sd[slots], t.mu[slots], bound)

    def _normalize(self, raw, mu_e, sd_e, mu_t, sd_t) -> np.ndarray:
        if self.scorer.normalization.method != "asnorm":
            return raw
        return asnorm(raw, mu_e, sd_e, mu_t, sd_t)


__all__ = ["Hit", "IndexSettings", "TemplateIndex"]
