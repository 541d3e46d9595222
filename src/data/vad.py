"""Voice activity detection: speech segments and net speech seconds of a waveform at any rate.

The one VAD of the product (``embed``, the scoring entry point ``verify_audio``, evaluation,
the service).

Why silero-vad (PyPI ``silero-vad``, MIT) and not webrtcvad: measured on ``../shared/data``
(5 s of each Speech Commands background noise, at 16 kHz), silero finds 0.0 s of speech in
every noise file, while webrtcvad (mode 2, 30 ms frames) calls 2.0 s of a dish-washing
recording, 2.4 s of a miaowing cat and 4.6 s of an exercise bike speech: a VAD gate built on
it would let noise through as "speech". On LibriSpeech and on the embedded synthetic corpus
both keep most of the speech (silero: 79 % and 91 % of the duration; webrtcvad 96 % and 98 %,
pauses included). silero's model ships inside its wheel (``silero_vad/data/silero_vad.onnx``;
the package's own loader reads it from site-packages) and runs offline, here through
onnxruntime (already a dependency for ``speakerops export``) on one thread: measured on a 3 s
LibriSpeech utterance, 4.5x faster than the wheel's TorchScript copy of the same weights, with
probabilities within 2e-6 of it (the VAD was 77 % of a verify request's CPU time).

Cost: the model steps through 32 ms windows (512 samples at 16 kHz, 256 at 8 kHz) with a
recurrent state. At 16 kHz (every other rate but 8 kHz is resampled to it) the wheel's
"sequence" export (``silero_vad_16k_sequence.onnx``) runs a whole block of up to 512 windows
(16 s) in one onnxruntime call, with probabilities identical to running the model window by
window (measured: 0 difference on LibriSpeech); on a 3 s utterance 7 ms, 4.8x less than the
batched streams below, which differed from the window-by-window result by up to 0.6 in a
window's probability. At 8 kHz (no sequence export) the waveform is cut into
``STREAM_WINDOWS``-window streams (1 s) that run side by side as one batch, each preceded by
``WARMUP_WINDOWS`` windows (1 s) of the audio before it (outputs dropped) so its recurrent
state has settled when its own windows start: a 10 s request takes 64 batched steps instead
of 313 (``bench/bench_vad.py`` times the paths side by side). The
probabilities become segments through silero's own ``get_speech_timestamps_from_probs``
(threshold, minimum speech and silence durations, padding from ``conf/config.yaml``
``quality.vad``).

Known limit: the embedded synthetic corpus is only half speech to silero (its probabilities
hover near the 0.5 threshold): about 1.6 % of the demo's eval/calibration utterances (2-4 s)
get under 1 s of net speech, and phone-band synthetic speech at 5 dB SNR far more.

Rates: 8 kHz and 16 kHz run natively; any other rate is resampled to 16 kHz first. Importing
silero_vad sets ``torch.set_num_threads(1)``; the thread count is put back right after.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

_threads = torch.get_num_threads()
import silero_vad  # noqa: E402 - its import resets torch's thread count, restored below

torch.set_num_threads(_threads)

from speakerops.core.schema import setting  # noqa: E402
from speakerops.data.resample import resample  # noqa: E402

__all__ = ["STREAM_WINDOWS", "WARMUP_WINDOWS", "SpeechSegments", "VadSettings", "detect_speech"]

STREAM_WINDOWS = 32  # windows (32 ms each) per parallel stream: 1 s
WARMUP_WINDOWS = 32  # windows of preceding audio each stream runs through first: 1 s
_NATIVE_RATES = {16000: 512, 8000: 256}  # sample rate -> window length the model takes
_local = threading.local()  # the model wrapper keeps state: one instance per thread


@dataclass(frozen=True)
class VadSettings:
    """silero's post-processing knobs (conf ``quality.vad``); no defaults here: conf/ has them."""

    threshold: float  # speech probability that opens a segment
    neg_threshold: float  # probability under which an open segment may close
    min_speech_ms: int  # shorter bursts are dropped
    min_silence_ms: int  # shorter pauses do not close a segment
    speech_pad_ms: int  # padding added to each side of a segment

    @classmethod
    def from_config(cls, vad: Mapping[str, Any]) -> VadSettings:
        s = cls(
            threshold=float(setting(vad, "quality.vad", "threshold")),
            neg_threshold=float(setting(vad, "quality.vad", "neg_threshold")),
            min_speech_ms=int(setting(vad, "quality.vad", "min_speech_ms")),
            min_silence_ms=int(setting(vad, "quality.vad", "min_silence_ms")),
            speech_pad_ms=int(setting(vad, "quality.vad", "speech_pad_ms")),
        )
        if not 0.0 < s.neg_threshold <= s.threshold < 1.0:
            raise ValueError(
                f"quality.vad: need 0 < neg_threshold <= threshold < 1, got "
                f"neg_threshold={s.neg_threshold}, threshold={s.threshold}"
            )
        return s


@dataclass(frozen=True)
class SpeechSegments:
    """Speech spans of one waveform, in seconds from its start."""

    segments: tuple[tuple[float, float], ...]
    duration_s: float

    @property
    def speech_s(self) -> float:
        """Net speech seconds (the sum of the segments' lengths)."""
        return float(sum(b - a for a, b in self.segments))

    def speech_within(self, start: float | None, end: float | None) -> float:
        """Net speech seconds inside [start, end) (a manifest segment of the recording)."""
        lo = 0.0 if start is None else float(start)
        hi = self.duration_s if end is None or end != end else float(end)
        return float(sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in self.segments))

    def to_samples(self, sample_rate: int) -> list[tuple[int, int]]:
        """The segments as [start, end) sample indices at ``sample_rate``."""
        return [
            (int(round(a * sample_rate)), int(round(b * sample_rate))) for a, b in self.segments
        ]


def _model() -> Any:
    """silero's ONNX model in its own wrapper (onnxruntime, CPU, one intra-op thread)."""
    model = getattr(_local, "model", None)
    if model is None:
        model = _local.model = silero_vad.load_silero_vad(onnx=True)
    return model


def _sequence_model() -> Any:
    """silero's 16 kHz sequence export (one onnxruntime call per 16 s block, one thread)."""
    model = getattr(_local, "sequence", None)
    if model is None:
        model = _local.sequence = silero_vad.load_silero_vad(sequence=True)
    return model


def speech_probabilities(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per-window speech probability of a mono waveform at 8 or 16 kHz."""
    if sample_rate == 16000:
        n = -(-wav.size // _NATIVE_RATES[16000])
        return _sequence_model().audio_forward(np.asarray(wav, np.float32), 16000)[:n]
    return stream_probabilities(_model(), wav, sample_rate)


@torch.inference_mode()
def stream_probabilities(model: Any, wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per-window probabilities from a streaming silero ``model`` (ONNX wrapper or
    TorchScript), its windows run as batched warmed-up streams (the module doc)."""
    win = _NATIVE_RATES[sample_rate]
    n = -(-wav.size // win)
    x = np.zeros(n * win, np.float32)
    x[: wav.size] = wav
    windows = torch.from_numpy(x.reshape(n, win))
    n_streams = -(-n // STREAM_WINDOWS)
    steps = WARMUP_WINDOWS + STREAM_WINDOWS
    # stream s covers windows [s*L, (s+1)*L), preceded by W windows of warm-up; stream 0's
    # warm-up is silence (what the model would have seen before the recording starts)
    padded = torch.cat(
        [
            torch.zeros(WARMUP_WINDOWS, win),
            windows,
            torch.zeros(n_streams * STREAM_WINDOWS - n, win),
        ]
    )
    idx = torch.arange(n_streams)[:, None] * STREAM_WINDOWS + torch.arange(steps)[None, :]
    batch = padded[idx]  # [streams, steps, win]
    model.reset_states()
    probs = torch.stack([model(batch[:, k], sample_rate)[:, 0] for k in range(steps)], dim=1)
    return probs[:, WARMUP_WINDOWS:].reshape(-1)[:n].numpy()


def detect_speech(wav: np.ndarray, sample_rate: int, settings: VadSettings) -> SpeechSegments:
    """Speech segments of a mono float waveform at any sample rate."""
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"VAD needs a mono waveform [T], got shape {x.shape}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    duration = x.size / sample_rate
    if x.size == 0 or not np.any(x):
        return SpeechSegments((), duration)
    if not np.all(np.isfinite(x)):
        raise ValueError("VAD input contains NaN or Inf samples")
    rate = int(sample_rate)
    if rate not in _NATIVE_RATES:
        x, rate = resample(x, rate, 16000), 16000
    probs = speech_probabilities(x, rate)
    stamps = silero_vad.get_speech_timestamps_from_probs(
        probs.tolist(),
        sampling_rate=rate,
        threshold=settings.threshold,
        neg_threshold=settings.neg_threshold,
        min_speech_duration_ms=settings.min_speech_ms,
        min_silence_duration_ms=settings.min_silence_ms,
        speech_pad_ms=settings.speech_pad_ms,
        audio_length_samples=x.size,
    )
    segs = tuple((s["start"] / rate, min(s["end"] / rate, duration)) for s in stamps)
    return SpeechSegments(segs, duration)
