"""Lightning data: random fixed-length crops of training speakers, augmented per sample;
validation over full utterances of the calibration speakers scored on their trial list."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from speakerops.data.audio import load_audio
from speakerops.data.crop import random_crop
from speakerops.data.manifest import read_manifest, read_trials, row_spans


class WaveformStore:
    """Waveforms of a manifest at one sample rate, loaded lazily or all up front."""

    def __init__(
        self,
        paths: list[str],
        sample_rate: int,
        preload: bool,
        spans: list[tuple[float | None, float | None]] | None = None,
    ) -> None:
        self.paths = paths
        self.spans = spans or [(None, None)] * len(paths)
        self.sample_rate = sample_rate
        self.cache: list[np.ndarray | None] = [None] * len(paths)
        if preload:
            for i in range(len(paths)):
                self.cache[i] = self._load(i)

    def _load(self, i: int) -> np.ndarray:
        start, end = self.spans[i]
        return load_audio(self.paths[i], self.sample_rate, start=start, end=end)[0]

    def __getitem__(self, i: int) -> np.ndarray:
        wav = self.cache[i]
        return wav if wav is not None else self._load(i)

    def __len__(self) -> int:
        return len(self.paths)


class CropDataset(Dataset):
    """(augmented crop, label) pairs; label = speaker index + speed index · n_speakers.

    Each recording yields `crops_per_utterance` independent random crops per epoch (more
    optimizer steps between validations on small corpora)."""

    def __init__(
        self,
        store: WaveformStore,
        labels: np.ndarray,
        n_speakers: int,
        crop_samples: int,
        augment=None,
        seed: int = 0,
        crops_per_utterance: int = 1,
    ) -> None:
        if crops_per_utterance < 1:
            raise ValueError(f"data.loader.crops_per_utterance={crops_per_utterance} must be >= 1")
        self.crops_per_utterance = crops_per_utterance
        self.store, self.labels, self.n_speakers = store, labels, n_speakers
        self.crop_samples, self.augment, self.seed = crop_samples, augment, seed
        self.epoch = 0
        self._generator: torch.Generator | None = None

    def _gen(self) -> torch.Generator:
        if self._generator is None:
            info = get_worker_info()
            worker = info.id if info is not None else 0
            rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", 0)))
            self._generator = torch.Generator().manual_seed(
                self.seed * 1000 + worker + 100 * rank + 7919 * self.epoch
            )
        return self._generator

    def __len__(self) -> int:
        return len(self.labels) * self.crops_per_utterance

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i %= len(self.labels)
        gen = self._gen()
        wav = random_crop(torch.from_numpy(self.store[i]), self.crop_samples, gen)
        speed_index = 0
        if self.augment is not None:
            wav, speed_index = self.augment(wav, gen)
        return wav.float(), int(self.labels[i]) + speed_index * self.n_speakers


class UtteranceDataset(Dataset):
    """Full utterances (one per item) for embedding extraction."""

    def __init__(self, store: WaveformStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.store[i])


class SpeakerDataModule(pl.LightningDataModule):
    """Training crops from the `train` split; validation on the `calibration` split's trials."""

    def __init__(
        self,
        prepared_dir: str,
        sample_rate: int,
        crop_seconds: float = 2.0,
        batch_size: int = 64,
        num_workers: int = 0,
        preload: bool = True,
        seed: int = 0,
        augment=None,
        max_val_utterances: int | None = None,
        crops_per_utterance: int = 1,
    ) -> None:
        super().__init__()
        self.crops_per_utterance = crops_per_utterance
        self.prepared_dir = Path(prepared_dir)
        self.sample_rate, self.crop_seconds = sample_rate, crop_seconds
        self.batch_size, self.num_workers, self.preload = batch_size, num_workers, preload
        self.seed, self.augment, self.max_val_utterances = seed, augment, max_val_utterances
        self.train_set: CropDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        manifest = read_manifest(self.prepared_dir / "manifest.csv")
        train = manifest[manifest["split"] == "train"].reset_index(drop=True)
        if train["speaker"].nunique() < 2:
            raise ValueError(f"{self.prepared_dir}/manifest.csv: fewer than 2 training speakers")
        self.speakers = sorted(train["speaker"].unique())
        index = {s: i for i, s in enumerate(self.speakers)}
        store = WaveformStore(
            train["path"].tolist(), self.sample_rate, self.preload, row_spans(train)
        )
        self.train_set = CropDataset(
            store,
            train["speaker"].map(index).to_numpy(),
            len(self.speakers),
            int(self.crop_seconds * self.sample_rate),
            self.augment,
            self.seed,
            self.crops_per_utterance,
        )
        trials, self.val_trials_sha256 = read_trials(self.prepared_dir / "trials_calibration.csv")
        val_utts = sorted(set(trials["enroll"]) | set(trials["test"]))
        if self.max_val_utterances:
            keep = set(val_utts[: self.max_val_utterances])
            trials = trials[trials["enroll"].isin(keep) & trials["test"].isin(keep)]
            val_utts = sorted(keep)
        cal = manifest.set_index("utt_id").loc[val_utts]
        self.val_trials = trials.reset_index(drop=True)
        self.val_utt_ids = val_utts
        self.val_set = UtteranceDataset(
            WaveformStore(cal["path"].tolist(), self.sample_rate, self.preload, row_spans(cal))
        )

    @property
    def num_label_copies(self) -> int:
        return int(getattr(self.augment, "num_label_copies", 1)) if self.augment else 1

    @property
    def num_classes(self) -> int:
        return len(self.speakers) * self.num_label_copies

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        self.train_set.epoch += 1
        self.train_set._generator = None
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=False,
            generator=torch.Generator().manual_seed(self.seed + self.train_set.epoch),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=1, num_workers=0)
