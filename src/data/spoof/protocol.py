"""The spoofing protocol: which attacks each split holds, which bona fide items and spoofs are
made (the jobs), and the trial lists built from them.

* Attack-disjoint splits (:func:`check_splits`): the attacks of ``eval`` never appear in
  ``train`` or ``calibration``; every attack id named by a split is configured.
* Jobs (:func:`plan_jobs`): per split, ``speakers[split]`` speakers drawn (seeded) from the
  prepared manifest's split (speaker-disjoint, as the speaker model's); per speaker
  ``bonafide_per_speaker`` bona fide items and, per attack of the split, ``spoofs_per_attack``
  spoofs targeting that speaker: TTS in a voice of the speaker's gender at a pitch drawn per
  speaker, resynthesis and replay of one of the speaker's own recordings other than the one
  that enrols it. Every job carries its own seed (``SeedSequence`` of the config seed, split,
  speaker, attack and item), so the files do not depend on the worker count.
* Trials (:func:`sasv_trials`): per speaker with >= 2 bona fide items, the first enrols it;
  tests are its other bona fide items (``target``, label 1), ``nontargets_per_enroll`` bona
  fide items of other speakers (``nontarget``) and every spoof targeting it (``spoof``).
  Columns ``enroll,test,label,kind,attack``; label 1 only for bona fide targets (SASV).
* Deployment items (split ``deployment``): per eval speaker up to ``deployment_per_speaker``
  bona fide items from its recordings that no eval item uses, neither as a bona fide item nor
  as a spoof's source: the enrolled users' own audio a deployment holds, never a test item
  (``countermeasure.operating_point`` ``split: deployment`` sets the CM threshold on them).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from speakerops.core.jsonio import sha256_file
from speakerops.data.manifest import SPLITS, row_spans

BONAFIDE = "bonafide"
# bona fide items of the eval speakers from recordings no eval item uses, nor any spoof as its
# source (``cm_deployment.csv``): the deployment's own bona fide audio, for a CM threshold
DEPLOYMENT = "deployment"
KINDS = ("tts", "vocoder", "replay")


def check_splits(spoof: Mapping[str, Any]) -> dict[str, list[str]]:
    """``spoof.splits`` as lists, or ``ValueError`` naming the unknown attack or the eval
    attack also seen in training."""
    attacks = spoof["attacks"]
    splits = {s: [str(a) for a in spoof["splits"].get(s) or []] for s in SPLITS}
    for split, ids in splits.items():
        unknown = [a for a in ids if a not in attacks]
        if unknown:
            raise ValueError(
                f"spoof.splits.{split}: attacks {unknown} are not in spoof.attacks ({', '.join(attacks)})"
            )
        for a in ids:
            if attacks[a].get("kind") not in KINDS:
                raise ValueError(
                    f"spoof.attacks.{a}.kind={attacks[a].get('kind')!r}: expected one of {KINDS}"
                )
    seen = set(splits["train"]) | set(splits["calibration"])
    leaked = sorted(set(splits["eval"]) & seen)
    if leaked:
        raise ValueError(
            f"spoof.splits.eval: attacks {leaked} also appear in train/calibration "
            "(the eval attacks must be unseen)"
        )
    if not splits["eval"]:
        raise ValueError("spoof.splits.eval: no attacks (the unseen attacks to test on)")
    return splits


def attack_table(spoof: Mapping[str, Any], splits: dict[str, list[str]]) -> pd.DataFrame:
    """One row per configured attack: id, kind, system (engine / method), splits, unseen."""
    rows = []
    seen = set(splits["train"]) | set(splits["calibration"])
    for a, spec in sorted(spoof["attacks"].items()):
        inside = [s for s in SPLITS if a in splits[s]]
        if not inside:
            continue
        system = spec.get("engine") or spec.get("method") or spec["kind"]
        rows.append(
            {
                "attack": a,
                "kind": spec["kind"],
                "system": system,
                "splits": "+".join(inside),
                "unseen": a in splits["eval"] and a not in seen,
            }
        )
    return pd.DataFrame(rows)


def _seed(seed: int, *parts: int) -> int:
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5F00F, *parts])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def plan_jobs(
    manifest: pd.DataFrame, spoof: Mapping[str, Any], splits: dict[str, list[str]]
) -> list[dict]:
    """The bona fide and spoof items to make, in a deterministic order (see module doc)."""
    seed = int(spoof["seed"])
    attack_ids = sorted(spoof["attacks"])
    texts = [str(t) for t in spoof["texts"]]
    n_bf, n_sp = int(spoof["bonafide_per_speaker"]), int(spoof["spoofs_per_attack"])
    n_dep = int(spoof.get("deployment_per_speaker") or 0)
    if n_bf < 2:
        raise ValueError(
            f"spoof.bonafide_per_speaker={n_bf}: need >= 2 (one enrols, one is a target test)"
        )
    jobs: list[dict] = []
    for si, split in enumerate(SPLITS):
        rows = manifest[manifest["split"] == split]
        speakers = sorted(rows["speaker"].astype(str).unique())
        want = int(spoof["speakers"][split])
        rng = np.random.default_rng(_seed(seed, si))
        speakers = sorted(speakers[i] for i in rng.permutation(len(speakers))[:want])
        for pi, spk in enumerate(speakers):
            own = rows[rows["speaker"].astype(str) == spk].sort_values("utt_id")
            spans = row_spans(own)
            recs = [
                {"utt": u, "path": p, "start": s[0], "end": s[1]}
                for u, p, s in zip(own["utt_id"], own["path"], spans, strict=True)
            ]
            if len(recs) < 2:
                continue  # cannot enrol and test; reported by the counts in spoof.json
            srng = np.random.default_rng(_seed(seed, si, pi))
            order = [recs[i] for i in srng.permutation(len(recs))]
            bona = order[:n_bf]
            sources = order[1:]  # never the enrolment recording
            gender = str(own["gender"].iloc[0]) if "gender" in own.columns else "unknown"
            pitch = float(srng.uniform(0.15, 0.45) if gender == "m" else srng.uniform(0.5, 0.9))
            base = {"split": split, "speaker": spk, "gender": gender}
            first = len(jobs)
            for k, rec in enumerate(bona):
                jobs.append({**base, "utt_id": f"bf-{spk}-{k:02d}", "attack": BONAFIDE,
                             "kind": BONAFIDE, "source": rec, "seed": _seed(seed, si, pi, 0, k)})  # fmt: skip
            for a in splits[split]:
                ai = attack_ids.index(a) + 1
                for k in range(n_sp):
                    jrng = np.random.default_rng(_seed(seed, si, pi, ai, k, 1))
                    jobs.append(
                        {
                            **base,
                            "utt_id": f"{a}-{spk}-{k:02d}",
                            "attack": a,
                            "kind": str(spoof["attacks"][a]["kind"]),
                            "source": sources[int(jrng.integers(len(sources)))],
                            "text": texts[int(jrng.integers(len(texts)))],
                            "pitch": pitch,
                            "seed": _seed(seed, si, pi, ai, k),
                        }
                    )
            if split == "eval":  # the deployment's own audio: recordings no eval item uses
                used = {j["source"]["utt"] for j in jobs[first:] if j["kind"] != "tts"}
                rest = [r for r in order[n_bf:] if r["utt"] not in used][:n_dep]
                for k, rec in enumerate(rest):
                    jobs.append({**base, "split": DEPLOYMENT, "utt_id": f"dp-{spk}-{k:02d}",
                                 "attack": BONAFIDE, "kind": BONAFIDE, "source": rec,
                                 "seed": _seed(seed, si, pi, 0, 1000 + k)})  # fmt: skip
    return jobs


def sasv_trials(cm: pd.DataFrame, nontargets_per_enroll: int, seed: int) -> pd.DataFrame:
    """Trials of one split's CM manifest rows (see module doc), sorted, no duplicates."""
    cm = cm.sort_values("utt_id").reset_index(drop=True)
    bona = cm[cm["attack"] == BONAFIDE]
    rng = np.random.default_rng(_seed(seed, 0x7A))
    rows: list[tuple[str, str, int, str, str]] = []
    for spk in sorted(bona["speaker"].unique()):
        own = bona[bona["speaker"] == spk]["utt_id"].tolist()
        if len(own) < 2:
            continue
        enroll = own[0]
        rows += [(enroll, t, 1, "target", BONAFIDE) for t in own[1:]]
        others = bona[bona["speaker"] != spk]["utt_id"].to_numpy()
        take = rng.choice(others, size=min(nontargets_per_enroll, len(others)), replace=False)
        rows += [(enroll, str(t), 0, "nontarget", BONAFIDE) for t in sorted(take)]
        spoofs = cm[(cm["speaker"] == spk) & (cm["attack"] != BONAFIDE)]
        rows += [
            (enroll, u, 0, "spoof", a)
            for u, a in zip(spoofs["utt_id"], spoofs["attack"], strict=True)
        ]
    out = pd.DataFrame(rows, columns=["enroll", "test", "label", "kind", "attack"])
    return (
        out.drop_duplicates(["enroll", "test"])
        .sort_values(["enroll", "test"])
        .reset_index(drop=True)
    )


def read_pinned_list(path: str | Path, columns: tuple[str, ...]) -> tuple[pd.DataFrame, str]:
    """A list `spoof prepare` wrote (a CM protocol or SASV trials) and the sha256 of its bytes,
    refused when they differ from the `.sha256` written beside it or lack ``columns``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run `speakerops spoof prepare` first)")
    table = pd.read_csv(
        path, dtype={c: str for c in ("utt_id", "speaker", "attack", "enroll", "test", "kind")}
    )
    missing = set(columns) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: lacks columns {sorted(missing)}")
    sha = sha256_file(path)
    side = path.with_name(path.name + ".sha256")
    if side.is_file() and side.read_text().split()[0] != sha:
        raise ValueError(
            f"{path}: sha256 differs from {side.name}: the list changed after `spoof prepare`"
        )
    return table, sha


def read_cm_protocol(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A CM protocol (utt_id, speaker, attack, label: 1 bona fide), see :func:`read_pinned_list`."""
    return read_pinned_list(path, ("utt_id", "speaker", "attack", "label"))


def read_sasv_trials(path: str | Path) -> tuple[pd.DataFrame, str]:
    """SASV trials (enroll, test, label, kind, attack), see :func:`read_pinned_list`."""
    return read_pinned_list(path, ("enroll", "test", "label", "kind", "attack"))
