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
(a drift signal) come from here.

``serve.countermeasure`` is one of: a local file, hash-checked against
``serve.countermeasure_sha256``, else its sidecar; a registered version
``models:/spoof-countermeasure/<N>`` or ``@<alias>``, hash-checked against the version's
``cm_sha256`` tag (and ``serve.countermeasure_sha256`` when set); or ``pair``: the countermeasure
the served speaker version is paired with (its ``pair.countermeasure_version`` tag, written by
`speakerops spoof register`); serving ``models:/speaker-encoder@champion``, that is the champion
pair, and a reload that swaps the speaker version swaps its countermeasure with it (a new
version without one fails the reload, the old pair kept). A countermeasure without an operating
point, or a ``pair`` without a registered, paired speaker version, is refused at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException

from speakerops.core.uris import parse_model_uri, registered_model_uri
from speakerops.data.audio import AudioError, validate_waveform
from speakerops.models.cm_decision import CountermeasureDecision
from speakerops.models.countermeasure import Countermeasure
from speakerops.models.encoder_file import expected_sha256
from speakerops.registry.pair import CM_SHA256_TAG, PAIR_SPEC, resolve_countermeasure
from speakerops.serve.errors import ServeError
from speakerops.serve.intake import Utterance
from speakerops.serve.metrics import Metrics
from speakerops.serve.settings import ServeSettings


@dataclass
class SpoofCheck:
    cm: CountermeasureDecision
    threshold: float
    refuse: bool
    sha256: str | None = None
    source: str | None = None  # serve.countermeasure as configured
    version: str | None = None  # models:/<cm model>/<N> when it came from the registry

    @classmethod
    def from_settings(
        cls,
        settings: ServeSettings,
        *,
        tracking_uri: str | None = None,
        speaker: tuple[str, str] | None = None,
    ) -> SpoofCheck | None:
        """The configured countermeasure (module doc), or None (``serve.countermeasure: null``).
        ``speaker``: the served (model name, version), which ``pair`` follows."""
        spec = settings.countermeasure
        if spec is None:
            return None
        sha, version = settings.countermeasure_sha256, None
        try:
            if spec == PAIR_SPEC or parse_model_uri(spec).is_registry:
                if not tracking_uri:
                    raise ValueError("a registry countermeasure needs the MLflow store (paths.registry_dir)")  # fmt: skip
                mv, cm = resolve_countermeasure(tracking_uri, spec, speaker)
                registered = str(mv.tags.get(CM_SHA256_TAG))
                if sha is not None and sha != registered:
                    raise ValueError(
                        f"serve.countermeasure_sha256={sha} does not match {mv.name} "
                        f"v{mv.version}'s {CM_SHA256_TAG} {registered}"
                    )
                sha, version = registered, registered_model_uri(mv.name, str(mv.version))
            else:
                cm = Countermeasure.load(spec, sha)
                # checked against its sidecar when no sha was given: the sidecar's is the file's
                sha = sha or expected_sha256(spec)
            threshold = cm.threshold
        except (OSError, ValueError, MlflowException) as exc:
            raise ValueError(f"serve.countermeasure={spec}: {exc}") from exc
        return cls(cm, threshold, settings.refuse_spoof, sha, spec, version)

    def describe(self) -> dict[str, Any]:
        op = self.cm.operating_point or {}
        return {"threshold": self.threshold, "rule": op.get("rule"), "refuse": self.refuse,
                "model_uri": self.version}  # fmt: skip

    def following(self, settings: ServeSettings, tracking_uri: str, speaker: tuple[str, str]):
        """The check for a newly served speaker version: ``pair`` loads that version's
        countermeasure (raises when it has none); any other source is kept as it is."""
        if self.source != PAIR_SPEC:
            return self
        return SpoofCheck.from_settings(settings, tracking_uri=tracking_uri, speaker=speaker)

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
