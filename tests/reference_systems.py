"""Reference systems the tests measure the synthetic corpus with (numpy/scipy/sklearn): the
mean-MFCC baseline of :mod:`speakerops.eval.baseline` scored over all pairs, and a cheap
learned system.

- **LDA proxy** (a learned system that needs no GPU): utterance statistics of the
  per-utterance mean-normalized 80-dim log-Mel fbank (std over frames, mean over the loudest
  frames, cepstral covariance, f0 percentiles), standardized, shrinkage LDA trained on
  training speakers, cosine scoring on held-out speakers. Shows that speaker identity is
  learnable from channel-normalized features (a neural embedding should do better still).

EERs come from ``speakerops.eval.metrics.eer`` (re-exported here as ``eer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.fft import dct

from speakerops.eval.baseline import load_waveforms, log_mel, mean_mfcc_embeddings
from speakerops.eval.metrics import eer

__all__ = [
    "all_pairs_trials",
    "eer",
    "f0_track",
    "lda_proxy_eer",
    "load_waveforms",
    "mean_mfcc_eer",
    "mean_mfcc_embeddings",
    "pair_cosines",
    "reference_eers",
    "utterance_stats",
]


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
