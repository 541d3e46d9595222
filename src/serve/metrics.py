"""The service's Prometheus metrics (``GET /metrics``), on a registry of its own (one per app).

* ``speakerops_request_seconds{endpoint,status}``: latency histogram per endpoint;
* ``speakerops_decisions_total{endpoint,decision}``: accept/reject (verify), match/unknown (identify);
* ``speakerops_enroll_refusals_total{reason}``: refused inputs by check (``quality.speech``...);
* ``speakerops_replay_flags_total{action}``: flagged / refused replay suspicions;
* ``speakerops_spoof_flags_total{endpoint,action}``: spoof-suspected audio (countermeasure score
  under its threshold), flagged or refused;
* ``speakerops_enrollments_total``, ``speakerops_deletions_total``;
* ``speakerops_templates{model_name,model_version}``: stored templates per model version
  (a gauge read from the store at scrape time), ``speakerops_stale_templates``;
* ``speakerops_model_info{model_name,model_version}``: the served model (value 1).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "speakerops_request_seconds",
            "request latency per endpoint",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "speakerops_decisions", "decisions per endpoint", ["endpoint", "decision"], registry=r
        )
        self.refusals = Counter(
            "speakerops_enroll_refusals", "refused inputs by reason", ["reason"], registry=r
        )
        self.replays = Counter(
            "speakerops_replay_flags",
            "replay suspicions (flagged or refused)",
            ["action"],
            registry=r,
        )
        self.spoofs = Counter(
            "speakerops_spoof_flags",
            "spoof-suspected audio (flagged or refused)",
            ["endpoint", "action"],
            registry=r,
        )
        self.enrollments = Counter("speakerops_enrollments", "stored enrollments", registry=r)
        self.deletions = Counter("speakerops_deletions", "deleted templates", registry=r)
        self.templates = Gauge(
            "speakerops_templates", "stored templates per model version",
            ["model_name", "model_version"], registry=r,
        )  # fmt: skip
        self.stale = Gauge(
            "speakerops_stale_templates", "templates of another model version than the served one",
            registry=r,
        )  # fmt: skip
        self.info = Gauge(
            "speakerops_model_info", "the served model", ["model_name", "model_version"], registry=r
        )
        self._template_counts: Callable[[], dict[tuple[str, str], int]] | None = None
        self._served: tuple[str, str] | None = None

    def model_info(self, name: str, version: str) -> None:
        self.info.clear()
        self.info.labels(name, version).set(1)
        self._served = (name, version)

    def count_templates_with(self, fn: Callable[[], dict[tuple[str, str], int]]) -> None:
        self._template_counts = fn

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.latency.labels(endpoint, str(status)).observe(seconds)

    def decision(self, endpoint: str, decision: str) -> None:
        self.decisions.labels(endpoint, decision).inc()

    def refusal(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def replay(self, *, refused: bool) -> None:
        self.replays.labels("refused" if refused else "flagged").inc()

    def spoof(self, endpoint: str, *, refused: bool) -> None:
        self.spoofs.labels(endpoint, "refused" if refused else "flagged").inc()

    def enrolled(self) -> None:
        self.enrollments.inc()

    def deleted(self) -> None:
        self.deletions.inc()

    def render(self) -> bytes:
        if self._template_counts is not None:
            counts = self._template_counts()
            self.templates.clear()
            for (name, version), n in counts.items():
                self.templates.labels(name, version).set(n)
            self.stale.set(sum(n for key, n in counts.items() if key != self._served))
        return generate_latest(self.registry)
