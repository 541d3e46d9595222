"""The one file lister: audio files below a folder (or the rows of a manifest), every skip recorded.

Used by every corpus adapter (``prepare``), by ``embed`` and by the noise/RIR banks. Nothing is
dropped silently: a directory that looks like an audio file (``x.wav/``), a dangling symbolic
link, a media file in a format outside ``audio.extensions`` (``.m4a``, ``.wma``, ...), a file an adapter
cannot place (no speaker folder, an unexpected name) and duplicate utterance ids are each
recorded in :attr:`FileListing.skipped` with the reason, and become quarantine rows.
Sidecar files (``speakers.csv``, ``SPEAKERS.TXT``, ``*.trans.txt``, ...) are not media and
are not reported.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from speakerops.data.audio import audio_extensions
from speakerops.data.manifest import read_manifest, row_spans

__all__ = [
    "FileListing",
    "QUARANTINE_COLUMNS",
    "drop_duplicate_ids",
    "list_audio_files",
    "list_inputs",
]

QUARANTINE_COLUMNS = ["utt_id", "path", "reason"]


def _is_media(path: Path) -> bool:
    kind = mimetypes.guess_type(path.name)[0] or ""
    return kind.startswith(("audio/", "video/"))


class FileListing:
    """Lists audio files by extension (``audio.extensions``; None: conf's) and records what it
    skips."""

    def __init__(self, extensions: Iterable[str] | None = None):
        exts = [str(e).lower() for e in (audio_extensions() if extensions is None else extensions)]
        bad = [e for e in exts if not e.startswith(".") or len(e) < 2]
        if not exts or bad:
            raise ValueError(
                f"audio.extensions={exts!r}: expected a non-empty list like ['.wav', '.flac']"
            )
        self.extensions = tuple(sorted(set(exts)))
        self.skipped: list[dict[str, str]] = []

    def skip(self, path: str | Path, reason: str, utt_id: str = "") -> None:
        """Record a skipped entry (it becomes a quarantine row)."""
        self.skipped.append({"utt_id": utt_id, "path": str(path), "reason": reason})

    def quarantine(self) -> pd.DataFrame:
        """The skipped entries as quarantine rows (``utt_id``, ``path``, ``reason``)."""
        return pd.DataFrame(self.skipped, columns=QUARANTINE_COLUMNS)

    def files(self, root: str | Path) -> list[Path]:
        """Audio files below ``root``, sorted; everything media-like that is not one is recorded."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a directory")
        found: list[Path] = []
        for folder, dirs, names in os.walk(root):
            base = Path(folder)
            for d in sorted(dirs):
                p = base / d
                if p.suffix.lower() in self.extensions or _is_media(p):
                    self.skip(p, f"{p}: a directory, not an audio file")
            for name in sorted(names):
                p = base / name
                suffix = p.suffix.lower()
                if p.is_symlink() and not p.exists():
                    self.skip(p, f"{p}: dangling symbolic link (-> {os.readlink(p)})")
                elif suffix in self.extensions:
                    if p.is_file():
                        found.append(p)
                    else:
                        self.skip(p, f"{p}: not a regular file")
                elif _is_media(p):
                    self.skip(
                        p,
                        f"{p}: unsupported audio format {suffix!r} "
                        f"(audio.extensions: {', '.join(self.extensions)})",
                    )
        return sorted(found)


def list_audio_files(root: str | Path) -> list[Path]:
    """Audio files below ``root`` (``audio.extensions``), sorted; for folders whose skips are
    not a record (noise and RIR banks)."""
    return FileListing().files(root)


def drop_duplicate_ids(df: pd.DataFrame, listing: FileListing, what: str) -> pd.DataFrame:
    """Rows whose ``utt_id`` is unique; every row of a duplicated id goes to the quarantine
    (which of them was meant cannot be known)."""
    dup = df["utt_id"].duplicated(keep=False)
    for utt, group in df[dup].groupby("utt_id", sort=True):
        paths = group["path"].astype(str).tolist()
        for p in paths:
            others = ", ".join(q for q in paths if q != p)
            listing.skip(p, f"{p}: duplicate utt_id {utt!r} in {what} (also {others})", str(utt))
    return df[~dup].reset_index(drop=True)


def list_inputs(
    input_path: str | Path, listing: FileListing
) -> tuple[list[str], list[str], Sequence[tuple[float | None, float | None]] | None]:
    """(utt_ids, paths, spans or None) of a folder of audio (ids relative to it) or a manifest
    CSV (its rows; ``start``/``end`` segments when it has them); skips go to ``listing``."""
    input_path = Path(input_path)
    if input_path.is_dir():
        files = listing.files(input_path)
        if not files and not listing.skipped:
            raise ValueError(
                f"{input_path}: no audio files found ({', '.join(listing.extensions)})"
            )
        return [f.relative_to(input_path).as_posix() for f in files], [str(f) for f in files], None
    if input_path.suffix.lower() == ".csv" and input_path.is_file():
        m = drop_duplicate_ids(read_manifest(input_path), listing, str(input_path))
        return m["utt_id"].astype(str).tolist(), m["path"].astype(str).tolist(), row_spans(m)
    raise ValueError(f"input={input_path}: expected a folder of audio files or a manifest .csv")
