"""Batch embedding: one embedding per audio file, bad files recorded and skipped.

With ``quality`` (:class:`~speakerops.data.quality.QualitySettings`, conf ``quality``) every
waveform passes the input checks first (net speech after VAD, clipping, DC offset, optional SNR
floor): a refused file is a failure with the named reason, never an embedding. An embedding
that is not finite is a failure too, so nothing NaN/Inf leaves this function.

`embed_files` is the core (used by evaluation and `speakerops embed`); `write_embeddings`
stores `utt_id` + `path` + `embedding` rows as parquet (one fixed-size list column) or npz,
encrypted by default: the file's bytes AES-256-GCM under the keyring's `embeddings` data key,
written as `<output>.enc` (`speakerops embed`; `embed.plaintext=true` writes the plain file,
with a warning). `read_embeddings` reads either back as a DataFrame.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from speakerops.core.keys import Keyring
from speakerops.data.audio import AudioError, audio_info, load_audio
from speakerops.data.listing import QUARANTINE_COLUMNS, FileListing, list_inputs
from speakerops.data.manifest import row_spans
from speakerops.data.quality import QualitySettings, measure_quality
from speakerops.models.encoder import SpeakerEncoder


@dataclass
class EmbeddingBatch:
    """Embeddings of the files that could be read, and the reasons for those that could not."""

    utt_ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    durations: list[float] = field(default_factory=list)
    sample_rates: list[int] = field(default_factory=list)
    speech_s: list[float] = field(default_factory=list)  # net speech (NaN: not checked)
    snr_db: list[float] = field(default_factory=list)  # WADA-SNR estimate (NaN: not checked)
    waveforms: list[np.ndarray] | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    failed_utt_ids: list[str] = field(default_factory=list)  # aligned with `failures`

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(zip(self.utt_ids, self.embeddings, strict=True))


@torch.no_grad()
def embed_files(
    encoder: SpeakerEncoder,
    paths: Sequence[str | Path],
    utt_ids: Sequence[str] | None = None,
    progress: bool = True,
    desc: str = "embedding",
    keep_waveforms: bool = False,
    spans: Sequence[tuple[float | None, float | None]] | None = None,
    quality: QualitySettings | None = None,
) -> EmbeddingBatch:
    """Embed each file (or its (start, end) span in seconds) at the encoder's sample rate;
    unreadable/empty/NaN files, files refused by the ``quality`` checks and non-finite
    embeddings go to `failures` as (path, reason)."""
    encoder.eval()
    utt_ids = list(utt_ids) if utt_ids is not None else [str(p) for p in paths]
    out = EmbeddingBatch(waveforms=[] if keep_waveforms else None)
    rows = []
    spans = list(spans) if spans is not None else [(None, None)] * len(utt_ids)
    items = list(zip(utt_ids, paths, spans, strict=True))
    for utt, path, (start, end) in tqdm(items, desc=desc, disable=not progress, unit="file"):
        try:
            wav, _ = load_audio(path, encoder.sample_rate, start=start, end=end)
            native_rate = audio_info(path).sample_rate
        except AudioError as exc:
            out.failures.append((str(path), str(exc)))
            out.failed_utt_ids.append(str(utt))
            continue
        speech, snr = float("nan"), float("nan")
        if quality is not None:
            report = measure_quality(wav, encoder.sample_rate, quality, str(path))
            if report.refusals:
                out.failures.append((str(path), "; ".join(r[3] for r in report.refusals)))
                out.failed_utt_ids.append(str(utt))
                continue
            speech, snr = report.speech_s, report.snr_db
        try:
            emb = encoder(torch.from_numpy(wav)[None], str(path))[0].numpy()
        except AudioError as exc:  # too short for the encoder, or a non-finite output
            out.failures.append((str(path), str(exc)))
            out.failed_utt_ids.append(str(utt))
            continue
        rows.append(emb)
        out.speech_s.append(speech)
        out.snr_db.append(snr)
        out.utt_ids.append(str(utt))
        out.paths.append(str(path))
        out.durations.append(wav.size / encoder.sample_rate)
        out.sample_rates.append(native_rate)
        if keep_waveforms:
            out.waveforms.append(wav)
    dim = encoder.embedding_dim
    out.embeddings = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    return out


def embed_rows(
    encoder: SpeakerEncoder,
    rows: pd.DataFrame,
    progress: bool = True,
    desc: str = "embedding",
    quality: QualitySettings | None = None,
) -> EmbeddingBatch:
    """Embed the rows of a manifest: whole files, or the `start`/`end` segment of a row of a
    segmented corpus (:func:`speakerops.data.manifest.row_spans`), checked with ``quality``."""
    return embed_files(
        encoder,
        rows["path"].tolist(),
        rows["utt_id"].tolist(),
        progress,
        desc,
        spans=row_spans(rows),
        quality=quality,
    )


def embed_inputs(
    encoder: SpeakerEncoder,
    input_path: str | Path,
    extensions: Sequence[str],
    quality: QualitySettings,
    desc: str = "embedding",
    progress: bool = True,
) -> tuple[EmbeddingBatch, pd.DataFrame]:
    """Embed a folder of audio or a manifest CSV: (batch, quarantine rows ``utt_id``, ``path``,
    ``reason`` of every entry skipped by the lister or refused by the checks)."""
    listing = FileListing(extensions)
    utt_ids, paths, spans = list_inputs(input_path, listing)
    batch = embed_files(encoder, paths, utt_ids, progress, desc, spans=spans, quality=quality)
    refused = pd.DataFrame(
        [(u, p, r) for u, (p, r) in zip(batch.failed_utt_ids, batch.failures, strict=True)],
        columns=QUARANTINE_COLUMNS,
    )
    return batch, pd.concat([listing.quarantine(), refused], ignore_index=True)


def quarantine_path(output: str | Path) -> Path:
    """Where ``speakerops embed`` records what it skipped: ``<output stem>.quarantine.csv``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.quarantine.csv")


EMBEDDINGS_PURPOSE = "embeddings"
ENCRYPTED_SUFFIX = ".enc"
_AAD = b"speakerops-embeddings-file"


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".parquet"):
        raise ValueError(f"output={path}: expected a .parquet or .npz file name")
    return suffix


def write_embeddings(
    batch: EmbeddingBatch, output: str | Path, keyring: Keyring | None = None
) -> Path:
    """Write `utt_id`, `path`, `embedding` as parquet (`.parquet`) or npz (`.npz`): with a
    `keyring` encrypted, to `<output>.enc`; without one in plaintext to `output` (the caller's
    explicit choice). Returns the path written."""
    output = Path(output)
    suffix = _format(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    if suffix == ".npz":
        np.savez(
            buf,
            utt_id=np.array(batch.utt_ids),
            path=np.array(batch.paths),
            embedding=batch.embeddings,
        )
    else:
        pd.DataFrame(
            {"utt_id": batch.utt_ids, "path": batch.paths, "embedding": list(batch.embeddings)}
        ).to_parquet(buf, index=False)
    if keyring is None:
        output.write_bytes(buf.getvalue())
        return output
    target = output.with_name(output.name + ENCRYPTED_SUFFIX)
    target.write_bytes(keyring.encrypt(EMBEDDINGS_PURPOSE, buf.getvalue(), aad=_AAD))
    return target


def read_embeddings(path: str | Path, keyring: Keyring | None = None) -> pd.DataFrame:
    """`utt_id`, `path`, `embedding` (one float32 array per row) of a file `write_embeddings`
    wrote: `<name>.parquet.enc` / `<name>.npz.enc` (decrypted with `keyring`, the store's:
    `speakerops.core.keys.keyring_from_cfg`) or a plaintext `.parquet` / `.npz`."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix.lower() == ENCRYPTED_SUFFIX:
        if keyring is None:
            raise ValueError(f"{path}: encrypted embeddings; pass the store's keyring")
        data = keyring.decrypt(data, aad=_AAD, what=str(path))
        path = path.with_suffix("")
    if _format(path) == ".parquet":
        frame = pd.read_parquet(io.BytesIO(data))
        frame["embedding"] = [np.asarray(e, np.float32) for e in frame["embedding"]]
        return frame
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return pd.DataFrame(
            {
                "utt_id": z["utt_id"].tolist(),
                "path": z["path"].tolist(),
                "embedding": list(z["embedding"].astype(np.float32)),
            }
        )
