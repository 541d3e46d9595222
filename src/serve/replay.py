"""Replay detection (seed F9, "repeated identical embeddings"): a verify attempt whose audio hash
or embedding (cosine >= ``serve.replay.similarity``) matches an attempt of the last
``serve.replay.window_s`` seconds, or an enrollment utterance of the claimed speaker, is
flagged (``serve.replay.action``: flag, or refuse with 409). Recent attempts are kept in memory
only, per tenant (at most ``serve.replay.max_recent``), never written to disk."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from speakerops.eval.scoring import l2_normalize
from speakerops.serve.intake import Utterance
from speakerops.serve.settings import ServeSettings
from speakerops.serve.store import Template


@dataclass
class _Attempt:
    at: float
    audio_sha256: str
    embedding: np.ndarray  # normalized


class ReplayMemory:
    """Recent verify attempts of one served model (embeddings of two models do not compare)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._recent: dict[str, deque[_Attempt]] = {}
        self._lock = threading.Lock()

    def flags(self, utt: Utterance, tenant: str, tpl: Template | None, audio_key: str) -> list[str]:
        """What `utt` repeats (empty: nothing); `audio_key`: its keyed audio hash."""
        s = self.settings
        now = time.monotonic()
        e = l2_normalize(utt.embedding[None])[0]
        flags: list[str] = []
        with self._lock:
            recent = self._recent.setdefault(tenant, deque(maxlen=s.replay_max_recent))
            while recent and now - recent[0].at > s.replay_window_s:
                recent.popleft()
            if any(a.audio_sha256 == utt.audio_sha256 for a in recent):
                flags.append("same audio as a recent attempt")
            elif any(float(a.embedding @ e) >= s.replay_similarity for a in recent):
                flags.append("near-identical embedding to a recent attempt")
            recent.append(_Attempt(now, utt.audio_sha256, e))
        if tpl is not None:
            if audio_key in tpl.audio_keys:
                flags.append("same audio as an enrollment utterance")
            elif float(np.max(l2_normalize(tpl.embeddings) @ e)) >= s.replay_similarity:
                flags.append("near-identical embedding to an enrollment utterance")
        return flags
