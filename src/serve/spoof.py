"""The service's spoofing countermeasure (``serve.countermeasure``): every checked utterance of
enroll, verify and identify is scored by the countermeasure file's LFCC-LCNN
(:class:`~speakerops.models.countermeasure.Countermeasure`) at the operating point stored in
that file (``extras.operating_point.threshold``, chosen by ``registry/policy.yaml``'s
``countermeasure.operating_point`` rule when `speakerops spoof evaluate` wrote the file).

Spoof-suspected iff score < threshold. With ``serve.refuse_spoof`` such audio is refused
(422 ``spoof.suspected``, naming the file, the check, the score and the threshold; nothing is
stored or logged), otherwise it is answered and flagged; both are counted on ``/metrics``
(``speakerops_spoof_flags_total{endpoint,action}``). The response's
``countermeasure: {score, threshold, spoof_suspected}`` and the production log's ``cm_score``
(a drift signal) come from here. The file is hash-checked on load: against
``serve.countermeasure_sha256``, else its sidecar; a file without an operating point is refused
at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from speakerops.data.audio import AudioError, validate_waveform
from speakerops.models.countermeasure import Countermeasure
from speakerops.serve.errors import ServeError
from speakerops.serve.intake import Utterance
from speakerops.serve.metrics import Metrics
from speakerops.serve.settings import ServeSettings


@dataclass
class SpoofCheck:
    cm: Countermeasure
    threshold: float
    refuse: bool
    sha256: str | None = None

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> SpoofCheck | None:
        """The configured countermeasure, or None (``serve.countermeasure: null``)."""
        if settings.countermeasure is None:
            return None
        where = f"serve.countermeasure={settings.countermeasure}"
        try:
            cm = Countermeasure.load(settings.countermeasure, settings.countermeasure_sha256)
            threshold = cm.threshold
        except (OSError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
        return cls(cm, threshold, settings.refuse_spoof, settings.countermeasure_sha256)

    def describe(self) -> dict[str, Any]:
        op = self.cm.operating_point or {}
        return {"threshold": self.threshold, "rule": op.get("rule"), "refuse": self.refuse}

    def assess(self, utt: Utterance, rate: int, endpoint: str, metrics: Metrics) -> dict[str, Any]:
        """``{score, threshold, spoof_suspected}`` of `utt` (its waveform at `rate`, the speaker
        model's); raises the refusal (module doc)."""
        if utt.waveform is None:
            raise ValueError(f"{utt.name}: no waveform kept by the intake for the countermeasure")
        try:
            wav, _ = validate_waveform(utt.waveform, int(rate), utt.name,
                                       self.cm.sample_rate)  # fmt: skip
            score = self.cm.score(wav)
        except (AudioError, ValueError) as exc:  # too short for its front end
            metrics.refusal("spoof.unscorable")
            raise ServeError(
                422, "spoof.unscorable", f"{utt.name}: the countermeasure cannot score it ({exc})",
                file=utt.name, check="countermeasure",
            ) from None  # fmt: skip
        suspected = bool(score < self.threshold)
        out = {"score": score, "threshold": self.threshold, "spoof_suspected": suspected}
        if not suspected:
            return out
        metrics.spoof(endpoint, refused=self.refuse)
        if self.refuse:
            raise ServeError(
                422,
                "spoof.suspected",
                f"{utt.name}: spoof suspected: countermeasure score {score:.3f} < threshold "
                f"{self.threshold:.3f} (the policy's countermeasure operating point); refused "
                "(serve.refuse_spoof)",
                file=utt.name,
                check="countermeasure",
                value=score,
                limit=self.threshold,
            )
        return out


def assess_all(
    check: SpoofCheck | None, utts: list[Utterance], rate: int, endpoint: str, metrics: Metrics
) -> list[dict[str, Any] | None]:
    """:meth:`SpoofCheck.assess` of each utterance (None each without a countermeasure)."""
    if check is None:
        return [None] * len(utts)
    return [check.assess(u, rate, endpoint, metrics) for u in utts]


def cm_scores(assessed: list[dict[str, Any] | None]) -> list[float | None]:
    """The production log's ``cm_score`` column of :func:`assess_all`'s answers."""
    return [None if a is None else float(a["score"]) for a in assessed]
