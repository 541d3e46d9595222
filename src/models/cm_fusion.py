"""Score-level fusion of countermeasures as one countermeasure (the ASVspoof baselines' fusion).

A fused CM file is JSON (``*.json``, no pickle) with its sha256 sidecar (``<file>.sha256``)::

    {"task": "countermeasure_fusion", "rule": "sum" | "any",
     "members": [{"file": "member0.safetensors", "sha256": "..."}, ...],
     "weights": [w0, w1, ...], "bias": b, "loc": [l0, l1, ...],
     "standardise": "mad" | "cdf", "ref": [[r00, r01, ...], ...],
     "extras": {"fit": {...}, "operating_point": {...}}}

Two rules, with ``s_i`` member i's bona fide logit:

* ``sum`` (a file without ``rule`` is one): ``b + sum_i w_i * s_i``, the weights a logistic
  regression fit on the calibration split (seen attacks only);
* ``any``: ``min_i w_i * (s_i - l_i)``, each member's score standardised by the median
  ``l_i`` and ``1 / w_i`` (1.4826 × the median absolute deviation) of its bona fide scores on
  the fit's split; under a threshold ``t`` the test is spoof-suspected as soon as *one* member
  scores under its own threshold ``l_i + t / w_i`` (an either-flags cascade: members that
  catch different attacks add up, where a weighted sum can let one drown the other).
  With ``standardise: cdf`` each member's score is instead mapped to ``log F_i(s_i)``, ``F_i``
  the empirical distribution of its bona fide scores on the fit's split (``ref``, sorted;
  plotting positions ``(k - 1/2) / n``, linear between them, exponential tails of scale
  ``1 / w_i`` beyond them): the fused threshold then rejects about the same share of bona fide
  audio through each member (a rejection budget ``r`` split as ``~r / n`` each), where MAD units
  give it all to the member with the longest low tail.

Both fits: :func:`speakerops.eval.cm_fusion_fit.fuse`. Members are countermeasure files in the
fused file's own folder (``file`` is a bare name), each checked against the listed sha256
before it is loaded: a member whose bytes changed is refused. :meth:`Countermeasure.load`
dispatches here for a ``.json`` path, so `spoof evaluate`, `spoof register`, the gate and
`serve.countermeasure` take a fused file as they take a single one; the operating point is the
fused score's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speakerops.core.jsonio import sha256_file
from speakerops.models import encoder_file
from speakerops.models.cm_decision import CountermeasureDecision

TASK = "countermeasure_fusion"
FILENAME = "countermeasure_fused.json"
RULES = ("sum", "any")
STANDARDISE = ("mad", "cdf")


def check_standardise(rule: str, standardise: str, prefix: str = "") -> None:
    """Refuse a standardisation the rule cannot take (``prefix`` names the config keys)."""
    if standardise not in STANDARDISE or (standardise == "cdf" and rule != "any"):
        raise ValueError(
            f"fused countermeasure: {prefix}standardise={standardise!r} with {prefix}rule="
            f"{rule}: expected one of {list(STANDARDISE)}, and cdf only with {prefix}rule=any"
        )


def log_cdf(s: np.ndarray, ref: list[float], scale: float) -> np.ndarray:
    """``log F(s)``, ``F`` the empirical CDF of the sorted bona fide scores ``ref`` (module doc):
    continuous and strictly increasing in ``s``, also beyond the scores seen."""
    s = np.asarray(s, dtype=float)
    u, inv = np.unique(np.asarray(ref, dtype=float), return_inverse=True)
    p = np.bincount(inv, weights=(np.arange(len(ref)) + 0.5) / len(ref)) / np.bincount(inv)
    lo, hi = p[0], p[-1]
    out = np.log(np.interp(s, u, p))
    below, above = s < u[0], s > u[-1]
    out[below] = np.log(lo) + (s[below] - u[0]) / scale
    out[above] = np.log1p(-(1.0 - hi) * np.exp(-(s[above] - u[-1]) / scale))
    return out


def is_fused(path: str | Path) -> bool:
    return Path(path).suffix == ".json"


class FusedCountermeasure(CountermeasureDecision):
    """Members (Countermeasure) → weighted sum of their logits + bias; the Countermeasure API
    the evaluation, registry and service use (score, score_file, assess, threshold, save)."""

    filename = FILENAME
    label = "fused countermeasure"

    def __init__(
        self,
        members: list,
        weights: list[float],
        bias: float,
        member_paths: list[Path],
        extras: dict[str, Any] | None = None,
        rule: str = "sum",
        loc: list[float] | None = None,
        standardise: str = "mad",
        ref: list[list[float]] | None = None,
    ) -> None:
        if not members or len(members) != len(weights) or len(members) != len(member_paths):
            raise ValueError(
                f"fused countermeasure: {len(members)} members, {len(weights)} weights, "
                f"{len(member_paths)} files: need one weight and one file per member (>= 1)"
            )
        if rule not in RULES:
            raise ValueError(f"fused countermeasure: rule {rule!r}: expected one of {list(RULES)}")  # fmt: skip
        if rule == "any" and (loc is None or len(loc) != len(members) or min(weights) <= 0):
            raise ValueError(
                f"fused countermeasure: rule any needs one location per member and positive "
                f"weights (got loc {loc!r}, weights {list(weights)!r})"
            )
        check_standardise(rule, standardise)
        if standardise == "cdf" and (
            ref is None
            or len(ref) != len(members)
            or any(len(r) < 2 or list(r) != sorted(r) for r in ref)
        ):
            raise ValueError(
                "fused countermeasure: standardise cdf needs, per member, its sorted bona fide "
                f"scores (two or more): got {None if ref is None else [len(r) for r in ref]}"
            )
        rates = {m.sample_rate for m in members}
        if len(rates) != 1:
            raise ValueError(f"fused countermeasure: members' sample rates differ {sorted(rates)}")  # fmt: skip
        self.members = members
        self.weights = [float(w) for w in weights]
        self.bias = float(bias)
        self.rule = rule
        self.loc = [float(v) for v in loc] if loc is not None else None
        self.standardise = standardise
        self.ref = [[float(v) for v in r] for r in ref] if standardise == "cdf" else None
        self.member_paths = [Path(p) for p in member_paths]
        self.member_sha256 = [sha256_file(p) for p in self.member_paths]
        self.extras: dict[str, Any] = dict(extras or {})

    @property
    def sample_rate(self) -> int:
        return int(self.members[0].sample_rate)

    @property
    def min_samples(self) -> int:
        return max(int(m.min_samples) for m in self.members)

    def fuse_scores(self, member_scores: np.ndarray) -> np.ndarray:
        """``[N, n_members]`` member logits → ``[N]`` fused scores (the rule's, module doc)."""
        s = np.asarray(member_scores, dtype=float)
        if self.ref is not None:  # rule any in CDF units
            cols = [log_cdf(s[:, i], r, 1.0 / w) for i, (r, w) in enumerate(zip(self.ref, self.weights, strict=True))]  # fmt: skip
            return np.min(np.stack(cols, axis=1), axis=1)
        if self.rule == "any":
            return np.min((s - np.asarray(self.loc)) * np.asarray(self.weights), axis=1)
        return self.bias + s @ np.asarray(self.weights)

    def member_scores(self, wav: np.ndarray | torch.Tensor) -> list[float]:
        x = torch.as_tensor(wav, dtype=torch.float32).flatten()
        if x.numel() < self.min_samples:
            raise ValueError(
                f"countermeasure: {x.numel()} samples, need >= {self.min_samples} "
                f"({self.min_samples / self.sample_rate:.2f} s)"
            )
        return [m.score(x) for m in self.members]

    def score(self, wav: np.ndarray | torch.Tensor) -> float:
        return float(self.fuse_scores(np.asarray([self.member_scores(wav)]))[0])

    def eval(self) -> FusedCountermeasure:
        for m in self.members:
            m.eval()
        return self

    def files(self, path: str | Path) -> list[Path]:
        """The member files (and their sidecars) that travel with the fused file at ``path``."""
        out = []
        for i in range(len(self.members)):
            f = Path(path).parent / f"member{i}{encoder_file.SUFFIX}"
            out += [f, encoder_file.sidecar(f)]
        return out

    def save(self, path: str | Path) -> Path:
        """The fused file, its sidecar, and a copy of each member beside it (``member<i>``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        members = []
        for i, (src, sha) in enumerate(zip(self.member_paths, self.member_sha256, strict=True)):
            dst = path.parent / f"member{i}{encoder_file.SUFFIX}"
            if sha256_file(src) != sha:
                raise ValueError(f"{src}: member changed since it was loaded (sha256 {sha} expected)")  # fmt: skip
            if src.resolve() != dst.resolve():
                shutil.copyfile(src, dst)
            encoder_file.sidecar(dst).write_text(f"{sha}  {dst.name}\n")
            members.append({"file": dst.name, "sha256": sha})
        body = {"task": TASK, "rule": self.rule, "members": members, "weights": self.weights,
                "bias": self.bias, "extras": self.extras}  # fmt: skip
        if self.loc is not None:
            body["loc"] = self.loc
        if self.ref is not None:
            body["standardise"], body["ref"] = self.standardise, self.ref
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=2, default=float))
        tmp.replace(path)
        encoder_file.sidecar(path).write_text(f"{sha256_file(path)}  {path.name}\n")
        return path

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None) -> FusedCountermeasure:
        from speakerops.models.countermeasure import Countermeasure

        path = Path(path)
        data = path.read_bytes()
        encoder_file.check_bytes(path, data, sha256)
        body = json.loads(data)
        if body.get("task") != TASK:
            raise ValueError(f"{path}: not a fused countermeasure file (task {body.get('task')!r})")  # fmt: skip
        members, paths = [], []
        for i, m in enumerate(body.get("members") or []):
            name, sha = str(m.get("file", "")), m.get("sha256")
            if not name or Path(name).name != name or not sha:
                raise ValueError(f"{path}: members[{i}] needs a bare file name and its sha256, got {m}")  # fmt: skip
            member = path.parent / name
            if not member.is_file():
                raise ValueError(f"{path}: members[{i}] {name} is missing beside it")
            if sha256_file(member) != sha:
                raise ValueError(f"{path}: members[{i}] {name} does not match its listed sha256 {sha} (refused)")  # fmt: skip
            members.append(Countermeasure.load(member, sha))
            paths.append(member)
        weights, loc, ref = body.get("weights"), body.get("loc"), body.get("ref")
        for key, v in (("weights", weights), ("loc", loc)):
            if (v is not None or key == "weights") and not _finite_list(v):
                raise ValueError(f"{path}: {key} must be a list of finite numbers, got {v!r}")
        if ref is not None and not (isinstance(ref, list) and all(_finite_list(r) for r in ref)):
            raise ValueError(f"{path}: ref must be a list of lists of finite numbers, got {ref!r}")
        rule, std = str(body.get("rule", "sum")), str(body.get("standardise", "mad"))
        return cls(members, weights, float(body.get("bias", 0.0)), paths, body.get("extras"),
                   rule, loc, std, ref).eval()  # fmt: skip


def _finite_list(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in v
    )
