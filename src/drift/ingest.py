"""`speakerops embed`: production audio -> embeddings file and, optionally, the production log.

The model is a registry URI (`models:/name@alias`, resolved in the store of
`paths.registry_dir`) or a local encoder file / pyfunc folder. Every input goes through the
file lister and the input checks (`quality.*`, `audio.extensions`); what they skip or refuse
is written to `<output stem>.quarantine.csv` and the rest is embedded. Each logged row carries
the model version, duration, native sample rate, blind SNR, the channel (`channel=`, else a
manifest's `channel` column) and, for a manifest with a `speaker` column, keyed pseudonyms of
the speakers; the embeddings are encrypted with the configured keyring.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from speakerops.core.keys import keyring_from_cfg
from speakerops.core.paths import tracking_uri
from speakerops.data.quality import QualitySettings
from speakerops.drift.log import append_production_log
from speakerops.eval.embed import EmbeddingBatch, embed_inputs, quarantine_path, write_embeddings
from speakerops.registry.package import load_encoder, resolve_model_version


@dataclass
class EmbedReport:
    output: Path
    n_embedded: int
    embedding_dim: int
    quarantine: pd.DataFrame  # utt_id, path, reason of every input skipped or refused
    plaintext: bool = False  # embed.plaintext: the output is not encrypted
    quarantine_file: Path | None = None
    log_part: Path | None = None


def embed_to_file(
    cfg: DictConfig,
    model: str,
    input: str | Path,
    output: str | Path,
    log_dir: str | Path | None = None,
    channel: str | None = None,
    progress: bool = True,
) -> EmbedReport:
    """Embed every accepted file of `input` (a folder of audio or a manifest CSV) with
    `model`, write `output` (.parquet | .npz; encrypted as `<output>.enc` unless
    `embed.plaintext`) and its quarantine list, and with `log_dir` append the batch to the
    production log."""
    store = tracking_uri(cfg.paths.registry_dir)
    encoder = load_encoder(model, tracking_uri=store)
    batch, quarantine = embed_inputs(
        encoder,
        input,
        cfg.audio.extensions,
        QualitySettings.from_config(cfg.quality),
        desc="speakerops embed",
        progress=progress,
    )
    plaintext = bool(cfg.embed.plaintext)
    out = Path(output)  # nothing embedded: nothing written (and no key needed)
    if batch.utt_ids:
        out = write_embeddings(batch, output, None if plaintext else keyring_from_cfg(cfg))
    report = EmbedReport(out, len(batch.utt_ids), encoder.embedding_dim, quarantine, plaintext)
    if len(quarantine):
        report.quarantine_file = quarantine_path(output)
        quarantine.to_csv(report.quarantine_file, index=False)
    if log_dir is not None and batch.utt_ids:
        ref = resolve_model_version(model, store)
        report.log_part = Path(_log(cfg, batch, Path(input), Path(log_dir), ref, channel))
    return report


def _log(
    cfg: DictConfig,
    batch: EmbeddingBatch,
    input: Path,
    log_dir: Path,
    model: tuple[str, str],
    channel: str | None,
) -> Path:
    speakers = None
    channels = [channel] * len(batch.utt_ids)
    if input.suffix.lower() == ".csv":
        manifest = pd.read_csv(input, dtype=str).set_index("utt_id")
        if "speaker" in manifest.columns:
            speakers = [manifest["speaker"].get(u) for u in batch.utt_ids]
        if "channel" in manifest.columns and channel is None:
            channels = [_text_or_none(manifest["channel"].get(u)) for u in batch.utt_ids]
    return append_production_log(
        log_dir,
        batch.embeddings,
        utt_ids=batch.utt_ids,
        model_name=model[0],
        model_version=model[1],
        durations_s=batch.durations,
        sample_rates=batch.sample_rates,
        snr_db=batch.snr_db,
        channels=channels,
        speaker_ids=speakers,
        keyring=keyring_from_cfg(cfg),
    )


def _text_or_none(value) -> str | None:
    return value if isinstance(value, str) and value else None
