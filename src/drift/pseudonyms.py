"""The production log's pseudonyms: keyed HMAC-SHA256 of speaker and utterance ids
(:func:`speakerops.core.keys.pseudonym`), never the raw ids (:mod:`speakerops.drift.log`)."""

from __future__ import annotations

import re

from speakerops.core.keys import (
    PSEUDONYM_KEY_ENV,
    KeyMaterialError,
    Keyring,
    check_pseudonym_key,
    pseudonym,
)

__all__ = ["leaks_speaker", "resolve_pseudonym_key", "speaker_pseudonym", "utterance_pseudonym"]


def resolve_pseudonym_key(key: bytes | str | None, keyring: Keyring | None) -> bytes:
    """The HMAC key: the argument, else the keyring's (env ``SPEAKEROPS_PSEUDONYM_KEY`` first)."""
    if key is not None:
        return check_pseudonym_key(key)
    if keyring is None:
        raise KeyMaterialError(
            f"no pseudonym key: pass keyring= or pseudonym_key=, or set {PSEUDONYM_KEY_ENV}; "
            "raw ids are never written to the log"
        )
    return keyring.pseudonym_key()


def speaker_pseudonym(speaker_id: str, key: bytes) -> str:
    """``HMAC-SHA256(key, speaker_id.encode("utf-8")).hexdigest()`` (64 hex chars)."""
    return pseudonym(speaker_id, key)


def utterance_pseudonym(utt_id: str, key: bytes) -> str:
    """``HMAC-SHA256(key, "utt\\x00" + utt_id)``: domain-separated from speaker pseudonyms."""
    return pseudonym("utt\x00" + str(utt_id), key)


def leaks_speaker(utt_id: str, speaker_id: str) -> bool:
    """Whether `utt_id` contains its raw speaker id (a token of it, or a substring of 4+ chars)."""
    tokens = set(re.split(r"[^A-Za-z0-9]+", utt_id))
    return speaker_id in tokens or (len(speaker_id) >= 4 and speaker_id in utt_id)
