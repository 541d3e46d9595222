"""The service's logic: enroll, verify, identify and delete, framework-free (the app wraps it).

Decisions are the product's: the packaged model's score normalization (AS-norm cohort) and
calibration (:class:`speakerops.eval.scoring.Scorer`) give a normalized score and a calibrated
LLR; the decision is the Bayes decision at the operating point of ``serve.policy`` (the
registry's ``policy.yaml``), accept iff llr >= θ. A request may ask for a stricter operating
point (a smaller ``p_target``, i.e. a higher θ), never a laxer one. Identification is open-set:
"unknown" when the best LLR is below θ. With ``serve.countermeasure`` every utterance is also
scored by the spoofing countermeasure (:mod:`.spoof`: refused or flagged below its threshold).
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from speakerops.core.keys import Keyring
from speakerops.core.policy import bayes_threshold, load_policy
from speakerops.drift.erase import erase_speaker
from speakerops.drift.log import append_production_log, speaker_pseudonym
from speakerops.eval.scoring import Scorer, l2_normalize
from speakerops.serve.audit import AuditTrail
from speakerops.serve.errors import ServeError
from speakerops.serve.follow import StoreFollower
from speakerops.serve.index import TemplateIndex
from speakerops.serve.intake import Utterance, intake
from speakerops.serve.metrics import Metrics
from speakerops.serve.replay import ReplayMemory
from speakerops.serve.settings import ServeSettings
from speakerops.serve.spoof import SpoofCheck, assess_all, cm_scores
from speakerops.serve.store import Template, TemplateStore
from speakerops.serve.tokens import check_tenant

ENROLL_MODES = ("replace", "add")


def _check_speaker_id(speaker_id: str) -> str:
    if not isinstance(speaker_id, str) or not (1 <= len(speaker_id) <= 200) or "\x00" in speaker_id:
        raise ServeError(422, "speaker.id", "speaker_id must be 1-200 characters")
    return speaker_id


def log_speaker(tenant: str, speaker_id: str) -> str:
    """The speaker id the production log pseudonymizes (tenants' ids never collide there)."""
    return f"{tenant}:{speaker_id}"


class Service:
    """One loaded model, one template store, one keyring (see the module docstring)."""

    def __init__(
        self,
        settings: ServeSettings,
        encoder: Any,
        *,
        model_name: str,
        model_version: str,
        keyring: Keyring,
        store: TemplateStore,
        metrics: Metrics,
        audit: AuditTrail,
        spoof: SpoofCheck | None = None,
    ) -> None:
        self.settings = settings
        self.encoder = encoder
        self.model_name, self.model_version = model_name, model_version
        self.keyring, self.store, self.metrics, self.audit = keyring, store, metrics, audit
        self.spoof = spoof
        self.scorer = Scorer.from_encoder(encoder, keyring)
        if self.scorer.calibration is None:
            raise ValueError(
                f"serve.model={settings.model}: the model carries no calibration; the service "
                "decides on calibrated LLRs (register the model through `speakerops register`)"
            )
        keyring.pseudonym_key()  # a wrong or missing master key fails now, not per request
        policy = load_policy(settings.policy)
        self.operating_point = dict(policy.operating_point)
        self.threshold = policy.threshold
        self.index = TemplateIndex(settings.index, self.scorer, model_name, model_version)
        self.follower = StoreFollower(store, self.index)
        self.rebuild_index()
        self.replay = ReplayMemory(settings)
        metrics.model_info(model_name, model_version)

    def rebuild_index(self) -> int:
        """The identification index from the store (the truth); rows that do not decrypt are
        left out and named on stderr. Returns the templates indexed."""
        return self.follower.rebuild()

    def with_model(self, encoder: Any, model_name: str, model_version: str) -> Service:
        """A service on another model sharing this one's store, keyring, metrics and audit
        trail (``POST /admin/reload`` swaps it in whole: a request in flight finishes on the
        service it started on). The replay memory starts empty: embeddings of two models are
        not comparable."""
        return Service(
            self.settings, encoder, model_name=model_name, model_version=model_version,
            keyring=self.keyring, store=self.store, metrics=self.metrics, audit=self.audit,
            spoof=self.spoof,
        )  # fmt: skip

    # -- helpers ---------------------------------------------------------------------------
    def _intake(self, name: str, data: bytes) -> Utterance:
        try:
            return intake(
                self.encoder,
                name,
                data,
                quality=self.settings.quality,
                min_sample_rate=self.settings.min_sample_rate,
            )
        except ServeError as exc:
            self.metrics.refusal(exc.code)
            raise

    def _llr(self, templates: np.ndarray, durations: np.ndarray, utt: Utterance) -> tuple:
        t = np.atleast_2d(templates)
        probe = np.repeat(utt.embedding[None], t.shape[0], axis=0)
        raw = np.einsum("ij,ij->i", l2_normalize(t), l2_normalize(probe))
        norm = self.scorer.normalization.score_pairs(t, probe)
        llr = self.scorer.to_llr(norm, durations, np.full(t.shape[0], utt.duration_s))
        return raw, norm, np.asarray(llr, dtype=np.float64)

    def _threshold(self, p_target: float | None) -> tuple[float, dict[str, float]]:
        if p_target is None:
            return self.threshold, self.operating_point
        op = {**self.operating_point, "p_target": float(p_target)}
        try:
            theta = bayes_threshold(op["p_target"], op["c_miss"], op["c_fa"])
        except ValueError as exc:
            raise ServeError(422, "request.p_target", f"p_target={p_target!r}: {exc}") from exc
        if theta < self.threshold:
            raise ServeError(
                422,
                "request.p_target",
                f"p_target={p_target:g} gives LLR threshold {theta:.3f}, laxer than the policy's "
                f"{self.threshold:.3f} (p_target {self.operating_point['p_target']:g}); a request "
                "may only ask for a stricter operating point",
            )
        return theta, op

    def _cm(self, utts: list[Utterance], endpoint: str) -> list[dict[str, Any] | None]:
        return assess_all(self.spoof, utts, int(self.encoder.sample_rate), endpoint, self.metrics)

    def _log(
        self, tenant: str, utts: list[Utterance], speaker_id: str | None, channel: str | None,
        cms: list[dict[str, Any] | None],
    ) -> None:  # fmt: skip
        append_production_log(
            self.settings.production_log,
            np.stack([u.embedding for u in utts]),
            utt_ids=[f"req-{uuid.uuid4().hex}" for _ in utts],
            model_name=self.model_name,
            model_version=self.model_version,
            durations_s=[u.duration_s for u in utts],
            sample_rates=[u.sample_rate for u in utts],
            snr_db=[u.snr_db for u in utts],
            channels=[channel] * len(utts),
            speaker_ids=[None if speaker_id is None else log_speaker(tenant, speaker_id)]
            * len(utts),
            keyring=self.keyring,
            cm_scores=cm_scores(cms),
            cm_sha256=None if self.spoof is None else self.spoof.sha256,
        )

    def _audit(self, action: str, tenant: str, token_id: str, **fields: Any) -> None:
        model = {"model_name": self.model_name, "model_version": self.model_version}
        self.audit.record(action, tenant=tenant, token_id=token_id, **model, **fields)

    def _check_version(self, tpl: Template) -> None:
        if (tpl.model_name, tpl.model_version) != (self.model_name, self.model_version):
            raise ServeError(
                409,
                "template.version",
                f"the template was made with {tpl.model_name} version {tpl.model_version}, this "
                f"service runs {self.model_name} version {self.model_version}: scores across "
                "model versions are not comparable; re-enroll the speaker",
                template_model_version=tpl.model_version,
                service_model_version=self.model_version,
            )

    # -- enroll ----------------------------------------------------------------------------
    def enroll(
        self,
        tenant: str,
        token_id: str,
        speaker_id: str,
        files: list[tuple[str, bytes]],
        mode: str = "replace",
        channel: str | None = None,
    ) -> dict[str, Any]:
        check_tenant(tenant)
        _check_speaker_id(speaker_id)
        if mode not in ENROLL_MODES:
            raise ServeError(422, "enroll.mode", f"mode={mode!r}: expected one of {ENROLL_MODES}")
        if not files:
            raise ServeError(422, "enroll.files", "no audio files in the request (field `files`)")
        if len(files) > self.settings.max_files:
            raise ServeError(
                422,
                "enroll.files",
                f"{len(files)} files > serve.upload.max_files={self.settings.max_files}",
            )
        utts = [self._intake(name, data) for name, data in files]
        self._check_consistency(utts)
        cms = self._cm(utts, "enroll")
        key = self.store.speaker_key(tenant, speaker_id)
        tpl = self.store.put(
            tenant,
            speaker_id,
            np.stack([u.embedding for u in utts]),
            model_name=self.model_name,
            model_version=self.model_version,
            durations_s=[u.duration_s for u in utts],
            audio_keys=[self.store.audio_key(tenant, u.audio_sha256) for u in utts],
            mode=mode,
            retained=[data for _, data in files] if self.settings.retain_enrollment_audio else None,
        )
        self.index.upsert(tpl)
        self._log(tenant, utts, speaker_id, channel, cms)
        self._audit(
            "serve.enroll",
            tenant,
            token_id,
            speaker_key=key,
            template_version=tpl.template_version,
            mode=mode,
            utterances=len(utts),
            retained=self.settings.retain_enrollment_audio,
        )
        self.metrics.enrolled()
        return {
            "tenant": tenant,
            "speaker_id": speaker_id,
            "mode": mode,
            "template_version": tpl.template_version,
            "utterances": int(tpl.embeddings.shape[0]),
            "model_name": self.model_name,
            "model_version": self.model_version,
            "files": [u.summary() for u in utts],
        }

    def _check_consistency(self, utts: list[Utterance]) -> None:
        if len(utts) < 2:
            return
        emb = l2_normalize(np.stack([u.embedding for u in utts]))
        for i, u in enumerate(utts):
            others = np.delete(emb, i, axis=0)
            dur = float(np.mean([o.duration_s for j, o in enumerate(utts) if j != i]))
            _, _, llr = self._llr(others.mean(axis=0, keepdims=True), np.array([dur]), u)
            limit = self.settings.consistency_min_llr
            if llr[0] < limit:
                self.metrics.refusal("enroll.consistency")
                raise ServeError(
                    422,
                    "enroll.consistency",
                    f"{u.name}: does not match the other utterances of the enrollment "
                    f"(LLR {llr[0]:.2f} < serve.enroll.consistency_min_llr={limit:g}): a "
                    "different speaker? nothing was stored",
                    file=u.name,
                    check="consistency",
                    value=float(llr[0]),
                    limit=float(limit),
                )

    # -- verify ----------------------------------------------------------------------------
    def verify(
        self,
        tenant: str,
        speaker_id: str,
        file: tuple[str, bytes],
        p_target: float | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]:
        check_tenant(tenant)
        _check_speaker_id(speaker_id)
        theta, op = self._threshold(p_target)
        key = self.store.speaker_key(tenant, speaker_id)
        tpl = self.store.get(tenant, key)
        if tpl is None:
            raise ServeError(
                404,
                "speaker.unknown",
                f"speaker {speaker_id!r} is not enrolled for tenant {tenant!r}",
            )
        self._check_version(tpl)
        utt = self._intake(*file)
        raw, norm, llr = self._llr(tpl.vector[None], np.array([tpl.duration_s]), utt)
        cms = self._cm([utt], "verify")
        flags = self.replay.flags(utt, tenant, tpl, self.store.audio_key(tenant, utt.audio_sha256))
        accept = bool(llr[0] >= theta)
        if flags and self.settings.replay_action == "refuse":
            self.metrics.replay(refused=True)
            raise ServeError(
                409, "replay", f"{utt.name}: replay suspected ({', '.join(flags)}); refused",
                flags=flags,
            )  # fmt: skip
        if flags:
            self.metrics.replay(refused=False)
        self._log(tenant, [utt], speaker_id, channel, cms)
        self.metrics.decision("verify", "accept" if accept else "reject")
        return {
            "tenant": tenant,
            "speaker_id": speaker_id,
            "decision": "accept" if accept else "reject",
            "accept": accept,
            "raw_score": float(raw[0]),
            "normalized_score": float(norm[0]),
            "llr": float(llr[0]),
            "threshold": float(theta),
            "operating_point": op,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "countermeasure": cms[0],
            "flags": {"replay_suspected": flags, "low_quality": self._low_quality(utt)},
            "audio": utt.summary(),
        }

    def _low_quality(self, utt: Utterance) -> list[str]:
        out = []
        q = self.settings.quality
        if utt.speech_s < 2 * q.min_speech_s:
            out.append(f"net speech {utt.speech_s:.2f} s is under twice the minimum")
        if np.isfinite(utt.snr_db) and utt.snr_db < 10.0:
            out.append(f"estimated SNR {utt.snr_db:.1f} dB under 10 dB")
        return out

    # -- identify --------------------------------------------------------------------------
    def identify(
        self,
        tenant: str,
        file: tuple[str, bytes],
        top_k: int | None = None,
        p_target: float | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]:
        check_tenant(tenant)
        k = self.settings.top_k if top_k is None else int(top_k)
        if not 1 <= k <= self.settings.max_top_k:
            raise ServeError(
                422, "request.top_k", f"top_k={top_k}: expected 1..{self.settings.max_top_k}"
            )
        theta, op = self._threshold(p_target)
        utt = self._intake(*file)
        cms = self._cm([utt], "identify")
        self.follower.follow(tenant)  # what other workers enrolled or deleted meanwhile
        hits = self.index.search(tenant, utt.embedding, utt.duration_s, k)
        enrolled, stale = self.index.counts(tenant)
        candidates = [
            {
                "speaker_id": h.speaker_id,
                "llr": h.llr,
                "normalized_score": h.norm,
                "raw_score": h.raw,
            }
            for h in hits
        ]
        best = candidates[0] if candidates else None
        known = best is not None and best["llr"] >= theta
        self._log(tenant, [utt], None, channel, cms)
        self.metrics.decision("identify", "match" if known else "unknown")
        return {
            "tenant": tenant,
            "decision": "match" if known else "unknown",
            "speaker_id": best["speaker_id"] if known else "unknown",
            "candidates": candidates,
            "threshold": float(theta),
            "operating_point": op,
            "enrolled": enrolled,
            "stale_templates": stale,
            "search": "approximate" if self.index.approximate(tenant) else "exact",
            "model_name": self.model_name,
            "model_version": self.model_version,
            "countermeasure": cms[0],
            "flags": {"low_quality": self._low_quality(utt)},
            "audio": utt.summary(),
        }

    # -- delete ----------------------------------------------------------------------------
    def delete(self, tenant: str, token_id: str, speaker_id: str) -> dict[str, Any]:
        check_tenant(tenant)
        _check_speaker_id(speaker_id)
        key = self.store.speaker_key(tenant, speaker_id)
        self.index.remove(tenant, key)  # first: no identify proposes the speaker meanwhile
        erased = self.store.delete(tenant, key)
        if not erased["templates"]:
            raise ServeError(
                404,
                "speaker.unknown",
                f"speaker {speaker_id!r} is not enrolled for tenant {tenant!r}",
            )
        # everything derived from the speaker: the production log rows keyed to them
        log_key = speaker_pseudonym(log_speaker(tenant, speaker_id), self.keyring.pseudonym_key())
        erased["production_log_rows"] = erase_speaker(self.settings.production_log, log_key)
        self._audit("serve.delete", tenant, token_id, speaker_key=key, erased=erased)
        self.metrics.deleted()
        return {"tenant": tenant, "speaker_id": speaker_id, "deleted": True, "erased": erased}
