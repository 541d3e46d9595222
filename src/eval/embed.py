"""Batch embedding: one embedding per audio file, bad files recorded and skipped.

`embed_files` is the core (used by evaluation and `speakerops embed`); `write_embeddings`
stores `utt_id` + `path` + `embedding` rows as parquet (one fixed-size list column) or npz.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from speakerops.data.audio import AudioError, audio_info, list_audio_files, load_audio
from speakerops.data.manifest import read_manifest, row_spans
from speakerops.models.encoder import SpeakerEncoder


@dataclass
class EmbeddingBatch:
    """Embeddings of the files that could be read, and the reasons for those that could not."""

    utt_ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    durations: list[float] = field(default_factory=list)
    sample_rates: list[int] = field(default_factory=list)
    waveforms: list[np.ndarray] | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)

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
) -> EmbeddingBatch:
    """Embed each file (or its (start, end) span in seconds) at the encoder's sample rate;
    unreadable/empty/NaN files go to `failures`."""
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
            continue
        rows.append(encoder(torch.from_numpy(wav)[None])[0].numpy())
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
    encoder: SpeakerEncoder, rows: pd.DataFrame, progress: bool = True, desc: str = "embedding"
) -> EmbeddingBatch:
    """Embed the rows of a manifest: whole files, or the `start`/`end` segment of a row of a
    segmented corpus (:func:`speakerops.data.manifest.row_spans`)."""
    return embed_files(
        encoder,
        rows["path"].tolist(),
        rows["utt_id"].tolist(),
        progress,
        desc,
        spans=row_spans(rows),
    )


def list_inputs(input_path: str | Path) -> tuple[list[str], list[str]]:
    """(utt_ids, paths) of a folder of audio (ids relative to it) or a manifest CSV."""
    input_path = Path(input_path)
    if input_path.is_dir():
        files = list_audio_files(input_path)
        if not files:
            raise ValueError(f"{input_path}: no .wav/.flac/.ogg files found")
        return [f.relative_to(input_path).as_posix() for f in files], [str(f) for f in files]
    if input_path.suffix.lower() == ".csv" and input_path.is_file():
        m = read_manifest(input_path)
        return m["utt_id"].astype(str).tolist(), m["path"].astype(str).tolist()
    raise ValueError(f"input={input_path}: expected a folder of audio files or a manifest .csv")


def write_embeddings(batch: EmbeddingBatch, output: str | Path) -> Path:
    """Write `utt_id`, `path`, `embedding` as parquet (`.parquet`) or npz (`.npz`)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    suffix = output.suffix.lower()
    if suffix == ".npz":
        np.savez(
            output,
            utt_id=np.array(batch.utt_ids),
            path=np.array(batch.paths),
            embedding=batch.embeddings,
        )
    elif suffix == ".parquet":
        pd.DataFrame(
            {"utt_id": batch.utt_ids, "path": batch.paths, "embedding": list(batch.embeddings)}
        ).to_parquet(output, index=False)
    else:
        raise ValueError(f"output={output}: expected a .parquet or .npz file name")
    return output
