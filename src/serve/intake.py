"""One uploaded utterance -> checked speech -> embedding.

Order of the checks (each refusal a :class:`ServeError` naming the file, the check, the value
and the limit): content type; size (the request as a whole is capped in the app); decodable
by soundfile (any format and rate it reads); non-empty, finite, not digitally silent; sample
rate >= ``serve.min_sample_rate``; the product's one set of input checks
(:func:`speakerops.data.quality.measure_quality`: net speech after the one VAD, clipping, DC
offset, SNR), measured at the model's rate. The embedding is computed as the evaluation
computes it (:func:`speakerops.eval.embed.embed_files`: the whole checked waveform at the model's
rate), so the packaged calibration, fitted on evaluation scores, holds for the service's scores
(measured: embedding only the VAD's speech segments moved the tiny test model's FMR from 0.50
to 0.79 at the same θ). A non-finite embedding is refused too.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from speakerops.data.audio import AudioError, validate_waveform
from speakerops.data.quality import QualitySettings, measure_quality
from speakerops.serve.errors import ServeError


@dataclass(frozen=True)
class Utterance:
    name: str
    embedding: np.ndarray  # float32 [D]
    audio_sha256: str
    duration_s: float
    speech_s: float
    sample_rate: int  # of the input
    snr_db: float
    clipped_ratio: float
    # the checked waveform at the model's rate (the countermeasure scores it; never stored)
    waveform: np.ndarray | None = field(default=None, repr=False, compare=False)

    def summary(self) -> dict:
        return {
            "file": self.name,
            "duration_s": round(self.duration_s, 3),
            "speech_s": round(self.speech_s, 3),
            "sample_rate": self.sample_rate,
            "snr_db": None if not np.isfinite(self.snr_db) else round(self.snr_db, 1),
        }


def check_content_type(name: str, content_type: str | None, allowed: tuple[str, ...]) -> None:
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype not in allowed:
        raise ServeError(
            415,
            "upload.content_type",
            f"{name}: content type {ctype or '(none)'!r} is not audio this service accepts "
            f"(serve.upload.content_types: {', '.join(allowed)})",
            file=name,
            value=ctype,
        )


def decode(name: str, data: bytes, min_sample_rate: int) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the rate of an uploaded file."""
    if not data:
        raise ServeError(422, "audio.empty", f"{name}: empty file (0 bytes)", file=name)
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - soundfile raises LibsndfileError / RuntimeError
        raise ServeError(
            422, "audio.corrupt", f"{name}: not decodable audio ({exc})", file=name
        ) from exc
    wav = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    try:
        wav, rate = validate_waveform(wav, int(rate), name)
    except AudioError as exc:
        code = "audio.silent" if "silent" in str(exc) else "audio.invalid"
        if wav.size == 0:
            code = "audio.empty"
        raise ServeError(422, code, str(exc), file=name) from exc
    if rate < min_sample_rate:
        raise ServeError(
            422,
            "quality.sample_rate",
            f"{name}: sample rate {rate} Hz < serve.min_sample_rate={min_sample_rate} Hz",
            file=name,
            check="sample_rate",
            value=rate,
            limit=min_sample_rate,
        )
    return wav, int(rate)


def intake(
    encoder,
    name: str,
    data: bytes,
    *,
    quality: QualitySettings,
    min_sample_rate: int,
) -> Utterance:
    """Check one uploaded file and embed its speech; raises :class:`ServeError` (4xx)."""
    native, rate = decode(name, data, min_sample_rate)
    model_rate = int(encoder.sample_rate)
    wav, _ = validate_waveform(native, rate, name, model_rate)
    report = measure_quality(wav, model_rate, quality, name)
    if report.refusals:
        check, value, limit, _ = report.refusals[0]
        raise ServeError(
            422,
            f"quality.{check}",
            "; ".join(r[3] for r in report.refusals),
            file=name,
            check=check,
            value=float(value),
            limit=float(limit),
        )
    try:  # the encoder refuses input too short for its front end and non-finite output
        emb = np.asarray(encoder.embed(wav, model_rate, name), dtype=np.float32)
    except AudioError as exc:
        raise ServeError(422, "audio.embedding", str(exc), file=name) from None
    return Utterance(
        name=name,
        embedding=emb,
        audio_sha256=hashlib.sha256(data).hexdigest(),
        duration_s=wav.size / model_rate,
        speech_s=report.speech_s,
        sample_rate=rate,
        snr_db=float(report.snr_db),
        clipped_ratio=float(report.clipped_ratio),
        waveform=wav,
    )
