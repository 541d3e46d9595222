"""Corpus adapters: each lists a corpus's recordings as a table (utt_id, path, speaker, metadata).

Every adapter lists through one :class:`~speakerops.data.listing.FileListing`, which records
each entry it skips (directories named like audio, dangling links, unsupported formats, files
the layout cannot place, duplicate ids) with its reason: `prepare` writes them to the
quarantine.

- synthetic: the embedded generator (`speakerops.data.synthetic`), the default;
- folder: `root/<speaker>/**/*.wav|flac|ogg`, optional `root/speakers.csv` with metadata;
- librispeech: `SPK-CHAPTER-UTT.flac` anywhere below root, `SPEAKERS.TXT` for gender;
- voxceleb: `root/wav/<id>/<video>/<utt>.wav`, optional `vox1_meta.csv`, official trial list
  lines `1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from speakerops.data.listing import FileListing, drop_duplicate_ids
from speakerops.data.synthetic import generate_corpus


def _require_dir(root: str | Path | None, corpus: str) -> Path:
    if root is None:
        raise ValueError(f"data.root must be set for corpus '{corpus}'")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.root={root}: directory not found for corpus '{corpus}'")
    return root


def folder_corpus(root: str | Path, listing: FileListing) -> pd.DataFrame:
    """`root/<speaker>/**/<file>`: the first folder level names the speaker."""
    root = _require_dir(root, "folder")
    rows = []
    for path in listing.files(root):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            listing.skip(path, f"{path}: directly under data.root, not in a <speaker>/ folder")
            continue
        speaker = rel.parts[0]
        utt_id = "-".join(rel.with_suffix("").parts)
        rows.append({"utt_id": utt_id, "path": str(path), "speaker": speaker})
    if not rows:
        raise ValueError(f"{root}: no audio files in <speaker>/ sub-folders")
    df = drop_duplicate_ids(pd.DataFrame(rows), listing, f"data.root={root}")
    meta = root / "speakers.csv"
    if meta.is_file():
        df = df.merge(pd.read_csv(meta, dtype={"speaker": str}), on="speaker", how="left")
    return df


_LIBRI_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def read_librispeech_speakers(path: Path) -> pd.DataFrame:
    """Parse LibriSpeech's `SPEAKERS.TXT` (`ID | SEX | SUBSET | MINUTES | NAME`)."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(";") or "|" not in line:
            continue
        parts = [p.strip() for p in line.split("|")]
        sex = parts[1].upper()
        rows.append({"speaker": parts[0], "gender": {"F": "f", "M": "m"}.get(sex, sex.lower())})
    return pd.DataFrame(rows, columns=["speaker", "gender"])


def librispeech_corpus(root: str | Path, listing: FileListing) -> pd.DataFrame:
    """LibriSpeech files `SPK-CHAPTER-UTT.flac` at any depth below root."""
    root = _require_dir(root, "librispeech")
    rows = []
    for path in listing.files(root):
        m = _LIBRI_NAME.match(path.stem)
        if not m:
            listing.skip(path, f"{path}: not a LibriSpeech name (SPK-CHAPTER-UTT)")
        else:
            rows.append(
                {
                    "utt_id": path.stem,
                    "path": str(path),
                    "speaker": m.group(1),
                    "chapter": m.group(2),
                }
            )
    if not rows:
        raise ValueError(f"{root}: no LibriSpeech-named files (SPK-CHAPTER-UTT.flac)")
    df = drop_duplicate_ids(pd.DataFrame(rows), listing, f"data.root={root}")
    for candidate in (root / "SPEAKERS.TXT", root.parent / "SPEAKERS.TXT"):
        if candidate.is_file():
            df = df.merge(read_librispeech_speakers(candidate), on="speaker", how="left")
            break
    return df


def voxceleb_corpus(root: str | Path, listing: FileListing) -> pd.DataFrame:
    """VoxCeleb layout `root/wav/<speaker>/<video>/<utt>.wav` (or without `wav/`)."""
    root = _require_dir(root, "voxceleb")
    base = root / "wav" if (root / "wav").is_dir() else root
    rows = []
    for path in listing.files(base):
        rel = path.relative_to(base)
        if len(rel.parts) != 3:
            listing.skip(path, f"{path}: not in the <speaker>/<video>/<utt> layout below {base}")
            continue
        rows.append({"utt_id": rel.as_posix(), "path": str(path), "speaker": rel.parts[0]})
    if not rows:
        raise ValueError(f"{base}: no files in <speaker>/<video>/<utt>.wav layout")
    df = drop_duplicate_ids(pd.DataFrame(rows), listing, f"data.root={root}")
    meta = root / "vox1_meta.csv"
    if meta.is_file():
        m = pd.read_csv(meta, sep="\t")
        m.columns = [c.strip().lower() for c in m.columns]
        id_col = next(c for c in m.columns if "id" in c and "vgg" not in c)
        m = m.rename(columns={id_col: "speaker", "nationality": "accent"})
        keep = [c for c in ("speaker", "gender", "accent") if c in m.columns]
        df = df.merge(m[keep].astype(str), on="speaker", how="left")
    return df


def read_voxceleb_trials(path: str | Path) -> pd.DataFrame:
    """Official VoxCeleb trial list `label enroll test` -> DataFrame(enroll, test, label)."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in {"0", "1"}:
            raise ValueError(f"{path}:{n}: expected '<0|1> <enroll> <test>', got {line!r}")
        rows.append({"enroll": parts[1], "test": parts[2], "label": int(parts[0])})
    return pd.DataFrame(rows, columns=["enroll", "test", "label"])


def synthetic_corpus(out_dir: str | Path, cfg) -> pd.DataFrame:
    """Generate (or reuse) the embedded synthetic corpus under `out_dir`."""
    out_dir = Path(out_dir)
    degrade = dict(cfg.degrade) if cfg.get("degrade") else None
    df = generate_corpus(
        out_dir,
        n_speakers=int(cfg.n_speakers),
        utts_per_speaker=int(cfg.utts_per_speaker),
        seed=int(cfg.seed),
        sample_rate=int(cfg.sample_rate),
        min_duration_s=float(cfg.min_duration),
        max_duration_s=float(cfg.max_duration),
        degrade=degrade,
        workers=int(cfg.get("workers", 1)),
    )
    df = df.copy()
    df["path"] = [str((out_dir / p).resolve()) for p in df["path"]]
    return df.drop(columns=[c for c in ("duration",) if c in df.columns])


def list_corpus(
    corpus: str,
    root: str | Path | None,
    listing: FileListing,
    synthetic_cfg=None,
    synthetic_dir=None,
) -> pd.DataFrame:
    """Dispatch to the adapter named by `data.corpus`; skipped entries go to ``listing``."""
    if corpus == "synthetic":
        return drop_duplicate_ids(
            synthetic_corpus(synthetic_dir, synthetic_cfg), listing, "the synthetic corpus"
        )
    adapters = {
        "folder": folder_corpus,
        "librispeech": librispeech_corpus,
        "voxceleb": voxceleb_corpus,
    }
    if corpus not in adapters:
        raise ValueError(
            f"data.corpus={corpus!r}: expected one of synthetic, {', '.join(adapters)}"
        )
    return adapters[corpus](root, listing)
