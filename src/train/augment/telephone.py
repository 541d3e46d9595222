"""Telephone channel augmentation (band, codec, packet loss)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from speakerops.data.channel.codec import CODECS
from speakerops.data.channel.telephone import telephone_channel
from speakerops.train.augment.base import Augmentation, check_p, check_range


class TelephoneChannel(Augmentation):
    """Narrow-band telephone channel.

    Resample to ``channel_rate`` (8 kHz), band-pass ``band_hz`` (300-3400 Hz, raised-cosine
    edges 100 Hz wide, applied in the FFT domain), a codec drawn from ``codecs`` (G.711 ``mulaw``
    / ``alaw`` 8-bit companding, ``pcm8`` 8-bit linear, ``none``) on the peak-normalized signal,
    optional packet loss (each ``frame_ms`` frame zeroed with probability ``packet_loss``), and
    back to the original rate with the same band-pass as receiver filter (nothing is left
    above ``band_hz[1] + 50`` Hz).
    """

    CODECS = CODECS

    def __init__(
        self,
        codecs: Sequence[str] = ("mulaw", "alaw", "none"),
        p: float = 0.2,
        band_hz: Sequence[float] = (300.0, 3400.0),
        packet_loss: float = 0.0,
        frame_ms: float = 20.0,
        channel_rate: int = 8000,
    ) -> None:
        self.p = check_p(p, "TelephoneChannel")
        self.codecs = tuple(str(c) for c in codecs)
        bad = [c for c in self.codecs if c not in self.CODECS]
        if not self.codecs or bad:
            raise ValueError(f"TelephoneChannel.codecs must be from {self.CODECS}, got {codecs!r}")
        self.channel_rate = int(channel_rate)
        self.band_hz = check_range(band_hz, "TelephoneChannel.band_hz", low=0.0)
        if self.band_hz[1] >= self.channel_rate / 2:
            raise ValueError(
                f"TelephoneChannel.band_hz upper edge {self.band_hz[1]} must be below "
                f"channel_rate/2 = {self.channel_rate / 2}"
            )
        self.packet_loss = float(packet_loss)
        if not 0.0 <= self.packet_loss < 1.0:
            raise ValueError(f"TelephoneChannel.packet_loss must be in [0, 1), got {packet_loss}")
        self.frame_ms = float(frame_ms)
        if self.frame_ms <= 0:
            raise ValueError(f"TelephoneChannel.frame_ms must be > 0, got {frame_ms}")

    def apply(
        self, wav: torch.Tensor, generator: torch.Generator, sample_rate: int
    ) -> torch.Tensor:
        return telephone_channel(
            wav,
            generator,
            sample_rate,
            codecs=self.codecs,
            band_hz=self.band_hz,
            packet_loss=self.packet_loss,
            frame_ms=self.frame_ms,
            channel_rate=self.channel_rate,
        )
