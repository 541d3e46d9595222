"""Data augmentation for speaker-embedding training.

The signal processing lives in `speakerops.data.channel` (shared with the synthetic corpus);
this package adds the probabilities, the draws and the config. Modules: `base` (the
`Augmentation` base class), `pipeline`, `speed`, `noise`, `reverb`, `telephone`, `spec`
(SpecAugment), `bank` (cached noise/RIR files).

Waveform augmentations run per sample inside the ``Dataset`` (DataLoader workers, CPU) on a
1-D float waveform at the model's sample rate, after the random crop and before fbank:

    crop -> AugmentPipeline: [SpeedPerturb] -> augmentations in list order -> fbank
    (e.g. Reverberate -> AddNoise -> TelephoneChannel, the Kaldi/WeSpeaker order)

``SpecAugment`` runs on the batch of features inside the LightningModule (identity in eval).

Conventions
-----------
* Randomness comes only from the ``torch.Generator`` passed to each call (CPU generator), so
  a sample is reproducible from its seed. The Dataset should seed one generator per sample or
  per worker, e.g. ``torch.Generator().manual_seed(base_seed + 1_000_003 * epoch + index)``.
* Each augmentation draws one ``U(0, 1)`` and is applied when it is ``< p`` (no draw when
  ``p = 0``); augmentations are independent of each other. Output length = input length.
* Speed perturbation makes NEW speaker labels (WeSpeaker): ``label = speaker +
  speed_index * n_speakers`` where ``speed_index`` 0 is the unchanged speed; the classifier
  needs ``n_speakers * pipeline.num_label_copies`` classes.
* Noise and RIR files are read with `speakerops.data.audio.read_audio` (any rate, any channel count), resampled to the
  pipeline rate and cached in memory per process up to ``cache_mb`` (each DataLoader worker has
  its own cache; caches are not pickled). Beyond the budget, long noise files at the target rate
  are read segment-wise from disk and others are decoded per use.
* Relative paths are resolved against the working directory of the process.
"""

from __future__ import annotations

from speakerops.data.channel.codec import alaw_decode, alaw_encode
from speakerops.data.channel.level import achieved_snr_db
from speakerops.data.channel.noise import NOISE_COLORS, colored_noise
from speakerops.data.channel.room import direct_path_index
from speakerops.train.augment.base import Augmentation
from speakerops.train.augment.noise import DEFAULT_MUSAN_CATEGORIES, AddNoise
from speakerops.train.augment.pipeline import AugmentPipeline
from speakerops.train.augment.reverb import Reverberate
from speakerops.train.augment.spec import SpecAugment
from speakerops.train.augment.speed import SpeedPerturb
from speakerops.train.augment.telephone import TelephoneChannel

__all__ = [
    "AddNoise",
    "AugmentPipeline",
    "Augmentation",
    "DEFAULT_MUSAN_CATEGORIES",
    "NOISE_COLORS",
    "Reverberate",
    "SpecAugment",
    "SpeedPerturb",
    "TelephoneChannel",
    "achieved_snr_db",
    "alaw_decode",
    "alaw_encode",
    "colored_noise",
    "direct_path_index",
]
