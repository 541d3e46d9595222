"""Naive and cheap learned reference systems for speaker verification (numpy/scipy/sklearn).

- **Mean-MFCC baseline** (the classic naive system): per utterance the mean over frames of
  MFCCs c1..c20 (40 Mel bands, 25 ms / 10 ms, *no* cepstral mean normalization), cosine scoring.
  Channel colouring adds a per-recording constant to every frame's cepstrum, so it lands
  straight in this embedding: on data with strong channel variation it fails.
- **LDA proxy** (a learned system that needs no GPU): utterance statistics of the
  per-utterance mean-normalized 80-dim log-Mel fbank (std over frames, mean over the loudest
  frames, cepstral covariance, f0 percentiles), standardized, shrinkage LDA trained on
  training speakers, cosine scoring on held-out speakers. Shows that speaker identity is
  learnable from channel-normalized features (a neural embedding should do better still).

EERs come from ``speakerops.eval.metrics.eer`` (re-exported here as ``eer``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.fft import dct

from speakerops.data.audio import read_audio
from speakerops.data.resample import resample
from speakerops.eval.metrics import eer  # the project's one EER definition (ROCCH-EER)

__all__ = [
    "all_pairs_trials",
    "eer",
    "f0_track",
    "lda_proxy_eer",
    "load_waveforms",
    "log_mel",
    "mean_mfcc_eer",
    "mean_mfcc_embeddings",
    "mfcc",
    "pair_cosines",
    "reference_eers",
    "utterance_stats",
]


# --- features -------------------------------------------------------------------------------
def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters equally spaced on the HTK mel scale m = 2595 log10(1 + f/700)."""
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    inv = lambda m: 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = inv(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lo, ce, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (f[None, :] - lo) / np.maximum(ce - lo, 1e-9)
    down = (hi - f[None, :]) / np.maximum(hi - ce, 1e-9)
    return np.maximum(0.0, np.minimum(up, down))


_FB_CACHE: dict[tuple, np.ndarray] = {}


def log_mel(
    x: np.ndarray,
    sample_rate: int,
    n_mels: int = 80,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    fmin: float = 20.0,
    fmax: float | None = None,
    preemphasis: float = 0.97,
) -> np.ndarray:
    """Log Mel filterbank energies (frames × n_mels): pre-emphasis, Hamming window,
    power spectrum, triangular Mel filters, ln(max(E, 1e-10))."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"log_mel expects a mono 1-D waveform, got shape {x.shape}")
    win = int(round(sample_rate * win_ms / 1000.0))
    hop = int(round(sample_rate * hop_ms / 1000.0))
    if x.size < win:
        raise ValueError(f"waveform of {x.size} samples is shorter than one {win_ms} ms frame")
    n_fft = 1 << int(np.ceil(np.log2(win)))
    fmax = sample_rate / 2.0 if fmax is None else fmax
    key = (sample_rate, n_fft, n_mels, fmin, fmax)
    if key not in _FB_CACHE:
        _FB_CACHE[key] = _mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    fb = _FB_CACHE[key]
    x = x - x.mean()
    x = np.append(x[0], x[1:] - preemphasis * x[:-1])
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    spec = np.abs(np.fft.rfft(frames * np.hamming(win), n=n_fft, axis=1)) ** 2
    return np.log(np.maximum(spec @ fb.T, 1e-10))


def mfcc(x: np.ndarray, sample_rate: int, n_mfcc: int = 20, n_mels: int = 40) -> np.ndarray:
    """MFCCs c1..c_{n_mfcc} (frames × n_mfcc): orthonormal DCT-II of the 40-band log Mel
    energies, c0 (log energy) dropped, no liftering, no cepstral mean normalization."""
    return dct(log_mel(x, sample_rate, n_mels=n_mels), type=2, norm="ortho", axis=1)[
        :, 1 : n_mfcc + 1
    ]


def load_waveforms(paths: Iterable[str | Path], sample_rate: int) -> list[np.ndarray]:
    """Read mono audio (`speakerops.data.audio.read_audio`, channels averaged), resampled to
    ``sample_rate`` if needed (`speakerops.data.resample.resample`)."""
    out = []
    for p in paths:
        data, sr = read_audio(p)
        x = data.mean(axis=1)
        if sr != sample_rate:
            x = resample(x, sr, sample_rate)
        out.append(x)
    return out


def _as_waveforms(items: Sequence[Any], sample_rate: int) -> list[np.ndarray]:
    if len(items) and isinstance(items[0], str | Path):
        return load_waveforms(items, sample_rate)
    return [np.asarray(w) for w in items]


def mean_mfcc_embeddings(
    waveforms: Sequence[np.ndarray] | Sequence[str | Path], sample_rate: int, n_mfcc: int = 20
) -> np.ndarray:
    """The naive embedding: e = (1/T) Σ_t mfcc_t (c1..c20, no CMN); shape (N, n_mfcc)."""
    ws = _as_waveforms(waveforms, sample_rate)
    return np.stack([mfcc(w, sample_rate, n_mfcc).mean(axis=0) for w in ws])


def f0_track(x: np.ndarray, sr: int, fmin: float = 50.0, fmax: float = 500.0) -> np.ndarray:
    """Autocorrelation f0 (Hz) of the voiced frames (40 ms, hop 20 ms) among the loudest 60 %:
    lag = argmax of the normalized autocorrelation r(τ)/r(0) over [sr/fmax, sr/fmin], kept if
    the peak is > 0.4. The signal is low-passed at 1 kHz first. Empty if nothing is voiced."""
    from scipy.signal import butter, sosfiltfilt

    x = np.asarray(x, dtype=np.float64)
    if sr > 2500:
        x = sosfiltfilt(butter(4, 1000.0, fs=sr, output="sos"), x)
    win, hop = int(0.04 * sr), int(0.02 * sr)
    if x.size < win:
        return np.zeros(0)
    fr = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    fr = fr - fr.mean(axis=1, keepdims=True)
    e = np.sum(fr**2, axis=1)
    fr = fr[e >= np.quantile(e, 0.4)] * np.hanning(win)
    n = 1 << int(np.ceil(np.log2(2 * win)))
    ac = np.fft.irfft(np.abs(np.fft.rfft(fr, n=n, axis=1)) ** 2, n=n, axis=1)[:, :win]
    ac = ac / (ac[:, :1] + 1e-12)
    lo, hi = int(sr / fmax), min(int(sr / fmin), win - 1)
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    good = ac[np.arange(len(lag)), lag] > 0.4
    return sr / lag[good]


def utterance_stats(
    x: np.ndarray, sample_rate: int, top_frac: float = 0.3, n_cep: int = 24
) -> np.ndarray:
    """Channel-normalized utterance statistics for the learned proxy.

    With L the 80-dim log Mel fbank and Z = L − mean_t(L) (per-utterance mean normalization,
    which removes any stationary channel colouring), s = std_t(Z), m = mean of Z over the
    ``top_frac`` loudest frames, C = the first ``n_cep`` DCT coefficients of Z over the louder
    half of the frames, with covariance Σ:
    [ln s − mean_f(ln s) (80); m − mean_f(m) (80); ln diag Σ (n_cep);
    the correlations Σ_ij/√(Σ_ii Σ_jj), i < j (n_cep(n_cep−1)/2);
    10th/50th/90th percentiles of ln f0 over voiced frames (3; ln 150 when nothing is voiced)].
    Removing the band-average of s and m drops the level/SNR common mode.
    """
    L = log_mel(x, sample_rate, n_mels=80)
    Z = L - L.mean(axis=0)
    energy = L.mean(axis=1)
    log_sd = np.log(Z.std(axis=0) + 1e-6)
    top = Z[energy >= np.quantile(energy, 1.0 - top_frac)].mean(axis=0)
    sp = Z[energy >= np.quantile(energy, 0.5)]
    C = dct(sp - sp.mean(axis=0), type=2, norm="ortho", axis=1)[:, :n_cep]
    cov = np.cov(C.T)
    var = np.diag(cov) + 1e-9
    corr = (cov / np.sqrt(np.outer(var, var)))[np.triu_indices(n_cep, k=1)]
    f0 = f0_track(x, sample_rate)
    lf0 = np.percentile(np.log(f0), [10, 50, 90]) if f0.size else np.full(3, np.log(150.0))
    return np.concatenate([log_sd - log_sd.mean(), top - top.mean(), np.log(var), corr, lf0])


# --- scoring and EER ------------------------------------------------------------------------
def all_pairs_trials(speakers: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair (i < j) of utterances: (index i, index j, label 1 = same speaker)."""
    spk = np.asarray(speakers)
    i, j = np.triu_indices(spk.size, k=1)
    return i, j, (spk[i] == spk[j]).astype(np.int64)


def pair_cosines(emb: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """s = e_i·e_j / (‖e_i‖‖e_j‖) for the index pairs (i, j) of an embedding matrix (trial
    lists by utterance id are scored by :func:`speakerops.eval.scoring.cosine_scores`)."""
    e = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
    return np.sum(e[i] * e[j], axis=1)


def _resolve(df, root: str | Path | None) -> list[Path]:
    root = Path(root) if root is not None else Path(".")
    missing = [c for c in ("path", "speaker") if c not in df.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {missing}; has {list(df.columns)}")
    return [p if p.is_absolute() else root / p for p in map(Path, df["path"])]


def mean_mfcc_eer(
    df, sample_rate: int = 16000, root: str | Path | None = None, waveforms=None
) -> float:
    """Mean-MFCC cosine EER over all pairs of the utterances in ``df`` (columns ``path``
    relative to ``root``, ``speaker``); pass ``waveforms`` to skip reading files."""
    ws = waveforms if waveforms is not None else load_waveforms(_resolve(df, root), sample_rate)
    emb = mean_mfcc_embeddings(ws, sample_rate)
    i, j, y = all_pairs_trials(df["speaker"].to_numpy())
    return eer(pair_cosines(emb, i, j), y)


def lda_proxy_eer(
    train_feats: np.ndarray,
    train_speakers: Sequence[str],
    test_feats: np.ndarray,
    test_speakers: Sequence[str],
    n_components: int | None = None,
) -> float:
    """Learned proxy: standardize → shrinkage LDA (Ledoit–Wolf, fit on training speakers,
    ≤ 64 dims) → centre on the training mean → cosine over all held-out pairs. Features e.g.
    from ``utterance_stats``."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from threadpoolctl import threadpool_limits

    tr_spk = np.asarray(train_speakers)
    if set(tr_spk) & set(np.asarray(test_speakers)):
        raise ValueError("lda_proxy_eer: training and test speakers overlap")
    if len(set(tr_spk)) < 2:
        raise ValueError(f"lda_proxy_eer needs >= 2 training speakers, got {len(set(tr_spk))}")
    mu, sd = train_feats.mean(axis=0), train_feats.std(axis=0) + 1e-9
    n_classes = len(set(tr_spk))
    k = min(n_components or 64, n_classes - 1, train_feats.shape[1])
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto", n_components=k)
    # a few-hundred-dim eigenproblem: one BLAS thread is fastest, and multithreaded OpenBLAS
    # was seen 100× slower on a busy 2-core machine
    with threadpool_limits(limits=1, user_api="blas"):
        lda.fit((train_feats - mu) / sd, tr_spk)
        emb = lda.transform((test_feats - mu) / sd)
        emb = emb - lda.transform((train_feats - mu) / sd).mean(axis=0)
    i, j, y = all_pairs_trials(test_speakers)
    return eer(pair_cosines(emb, i, j), y)


def reference_eers(
    df,
    test_speakers: Sequence[str],
    root: str | Path | None = None,
    sample_rate: int = 16000,
) -> dict[str, float]:
    """Both reference systems on a corpus table (columns ``path``, ``speaker``): the mean-MFCC
    baseline and the LDA proxy (trained on every speaker not in ``test_speakers``), each an
    all-pairs EER over the utterances of ``test_speakers``."""
    test = df["speaker"].isin(list(test_speakers)).to_numpy()
    if not test.any() or test.all():
        raise ValueError("reference_eers needs both test speakers and training speakers in df")
    ws = load_waveforms(_resolve(df, root), sample_rate)
    spk = df["speaker"].astype(str).to_numpy()
    feats = np.stack([utterance_stats(w, sample_rate) for w in ws])
    emb = mean_mfcc_embeddings([w for w, t in zip(ws, test, strict=True) if t], sample_rate)
    i, j, y = all_pairs_trials(spk[test])
    return {
        "mean_mfcc_eer": eer(pair_cosines(emb, i, j), y),
        "lda_proxy_eer": lda_proxy_eer(feats[~test], spk[~test], feats[test], spk[test]),
        "n_test_speakers": int(len(set(spk[test]))),
        "n_train_speakers": int(len(set(spk[~test]))),
    }
