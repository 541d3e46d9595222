"""A speaker model and its countermeasure registered, gated and promoted as one pair.

Registration (`speakerops spoof register cm=<file> speaker=models:/speaker-encoder/<N>`): the
countermeasure file that carries its operating-point threshold (the one `speakerops spoof
evaluate` writes, spoof.eval_dir/countermeasure.safetensors, the default; a file without one,
such as the training output, is refused) and its sha256 sidecar (safetensors + JSON, no pickle)
are logged on its training run (`train.json` beside the trained file; else a run of its own),
and registered as a
version of its own registered model (``register.cm_model_name``, default
`spoof-countermeasure`) with alias ``challenger``. Lineage both ways: the CM version is tagged
with its speaker version (``pair.speaker_model`` / ``pair.speaker_version``) and the speaker
version with its CM (``pair.countermeasure_model`` / ``pair.countermeasure_version``); the
file's sha256 is the ``cm_sha256`` tag and every load from the registry checks it. A speaker
version is paired once: a second CM for it is refused (register the encoder again).

Promotion (:func:`pair_checks`, called by :mod:`speakerops.registry.promote` under the speaker
model's lock): when the candidate or the champion is a pair, both pairs are scored on the
pinned spoof lists (`spoof.out_dir`) and gated by :func:`speakerops.registry.cm_gate.pair_verdict`,
relative gates on the paired speaker-bootstrap difference. Both aliases then move in the
promotion's one journaled transaction (:mod:`speakerops.registry.journal`), or neither. A
candidate without a countermeasure against a champion pair is refused, saying what to run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from speakerops.core.jsonio import sha256_file
from speakerops.core.lineage import git_commit
from speakerops.core.mlflow import ensure_experiment, fluent_store
from speakerops.core.names import CHALLENGER, CHAMPION
from speakerops.core.paths import tracking_uri
from speakerops.core.policy import Policy
from speakerops.core.uris import registered_model_uri
from speakerops.eval.spoof_eval import pair_report, paired_difference, score_pair
from speakerops.models.cm_decision import CountermeasureDecision
from speakerops.models.countermeasure import FILENAME, Countermeasure
from speakerops.models.encoder_file import sidecar
from speakerops.registry.champion import client_for, model_version
from speakerops.registry.checks import precondition
from speakerops.registry.cm_gate import pair_verdict

CM_MODEL_TAG = "pair.countermeasure_model"
CM_VERSION_TAG = "pair.countermeasure_version"
SPEAKER_MODEL_TAG = "pair.speaker_model"
SPEAKER_VERSION_TAG = "pair.speaker_version"
CM_SHA256_TAG = "cm_sha256"
CM_ARTIFACT_PATH = "countermeasure"


def cm_model_name(cfg: DictConfig) -> str:
    return str(cfg.register.cm_model_name)


def register_countermeasure(cfg: DictConfig, cm_path: str | Path, speaker_uri: str) -> dict:
    """Register the CM file as the pair of the speaker version ``speaker_uri`` (module doc);
    returns what is written to `register.out_dir/registered_cm.json`."""
    from speakerops.core.uris import parse_model_uri

    cm_path = Path(cm_path)
    if not cm_path.is_file():
        raise FileNotFoundError(
            f"cm={cm_path}: no countermeasure file (`speakerops spoof evaluate` writes the one to "
            "register, with its threshold: spoof.eval_dir/countermeasure.safetensors)"
        )
    cm = Countermeasure.load(cm_path)  # a valid CM file whose bytes match its sidecar
    if cm.operating_point is None or "threshold" not in cm.operating_point:
        raise ValueError(
            f"cm={cm_path}: the countermeasure carries no operating-point threshold "
            "(extras.operating_point; a training output has none): run `speakerops spoof "
            "evaluate` and register the file it writes (spoof.eval_dir/countermeasure.safetensors)"
        )
    ref = parse_model_uri(speaker_uri)
    if not ref.is_registry:
        raise ValueError(f"speaker={speaker_uri!r}: needs a registered version, e.g. models:/speaker-encoder/3")  # fmt: skip
    client = client_for(cfg)
    speaker = model_version(client, ref.name, ref.version, ref.alias)
    s_name, s_version = speaker.name, str(speaker.version)
    if CM_VERSION_TAG in speaker.tags:
        raise ValueError(
            f"{registered_model_uri(s_name, s_version)} is already paired with "
            f"{speaker.tags.get(CM_MODEL_TAG)} v{speaker.tags[CM_VERSION_TAG]}: a version's pair is "
            "fixed; register the speaker encoder again (`speakerops register`) and pair the new version"
        )
    if CHAMPION in (speaker.aliases or []):
        raise ValueError(
            f"{registered_model_uri(s_name, s_version)} is the champion: pairing it now would make a "
            "champion pair no gate has passed; register the speaker encoder again and promote the new "
            "version with this countermeasure"
        )
    name = cm_model_name(cfg)
    cm_sha = sha256_file(cm_path)
    reference = _pair_reference(cfg, client, speaker, cm, cm_sha)
    run_id = _cm_run(cfg, client, cm_path)
    client.log_artifact(run_id, str(cm_path), CM_ARTIFACT_PATH)
    client.log_artifact(run_id, str(sidecar(cm_path)), CM_ARTIFACT_PATH)
    for member in cm.files(cm_path) if hasattr(cm, "files") else []:  # a fused CM's members
        client.log_artifact(run_id, str(member), CM_ARTIFACT_PATH)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="countermeasures paired with speaker models"
        )
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{CM_ARTIFACT_PATH}"
    tags = {
        CM_SHA256_TAG: cm_sha,
        SPEAKER_MODEL_TAG: s_name,
        SPEAKER_VERSION_TAG: s_version,
        "git_commit": git_commit(),
        "cm_file": cm_path.name,
    }
    version = str(client.create_model_version(name, source, run_id=run_id, tags=tags).version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    client.set_model_version_tag(s_name, s_version, CM_MODEL_TAG, name)
    client.set_model_version_tag(s_name, s_version, CM_VERSION_TAG, version)
    result = {
        "model_name": name,
        "version": version,
        "model_uri": registered_model_uri(name, version),
        "run_id": run_id,
        "speaker_model_uri": registered_model_uri(s_name, s_version),
        "aliases": sorted(client.get_model_version(name, version).aliases),
        "reference_cm_scores": reference,
        **tags,
    }
    out = Path(cfg.register.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "registered_cm.json").write_text(json.dumps(result, indent=2))
    return result


def _pair_reference(
    cfg: DictConfig, client, speaker, cm: CountermeasureDecision, cm_sha256: str
) -> int | None:
    """The speaker version's drift reference (its run's ``reference`` artifacts) gains the CM
    scores of its recordings (:func:`~speakerops.registry.reference.with_cm_scores`), logged
    over it on the same run, so that a champion pair's drift job checks ``cm_score``. Returns
    how many recordings it holds (None: the version has no run or no reference)."""
    import tempfile

    from speakerops.core.keys import keyring_from_cfg
    from speakerops.registry.reference import (
        REFERENCE_ARTIFACT_PATH,
        load_reference,
        with_cm_scores,
    )

    if not speaker.run_id:
        return None
    store = tracking_uri(cfg.paths.registry_dir)
    keyring = keyring_from_cfg(cfg)
    with tempfile.TemporaryDirectory() as tmp, fluent_store(store):
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=speaker.run_id, artifact_path=REFERENCE_ARTIFACT_PATH, dst_path=tmp,
                tracking_uri=store,
            )  # fmt: skip
        except (MlflowException, OSError):
            return None
        ref = load_reference(local, keyring=keyring)
        out = with_cm_scores(ref, cfg.data.prepared_dir, Path(tmp) / "with_cm", keyring=keyring,
                             countermeasure=cm, cm_sha256=cm_sha256)  # fmt: skip
        client.log_artifacts(speaker.run_id, str(out), REFERENCE_ARTIFACT_PATH)
    return len(ref)


def _cm_run(cfg: DictConfig, client, cm_path: Path) -> str:
    """The CM's training run (`train.json` beside the file, or beside the trained file that
    `spoof evaluate` read, named by the `spoof_eval.json` beside it), else a run of its own."""
    folders = [cm_path.parent]
    report = cm_path.parent / "spoof_eval.json"
    if report.is_file():
        trained = json.loads(report.read_text()).get("countermeasure")
        if trained:
            folders.append(Path(trained).parent)
    for folder in folders:
        summary = folder / "train.json"
        if summary.is_file():
            run_id = json.loads(summary.read_text()).get("run_id")
            if run_id:
                return str(run_id)
    exp_id = ensure_experiment(cfg.mlflow.experiment, cfg.paths.registry_dir)
    return str(client.create_run(exp_id, run_name=f"countermeasure-{cm_path.stem}").info.run_id)


def paired_cm(mv) -> tuple[str, str] | None:
    """(CM model, CM version) of a speaker version that is one half of a pair, else None."""
    tags = dict(mv.tags or {})
    if CM_VERSION_TAG not in tags:
        return None
    return str(tags.get(CM_MODEL_TAG)), str(tags[CM_VERSION_TAG])


PAIR_SPEC = "pair"  # serve.countermeasure: the CM the served speaker version is paired with


def resolve_countermeasure(store: str, spec: str, speaker: tuple[str, str] | None):
    """``serve.countermeasure``'s registry forms: (the CM version, its Countermeasure checked
    against the version's ``cm_sha256`` tag). ``models:/<cm model>/<N>`` or ``@<alias>``; or
    ``pair``: the CM that the served speaker version (``speaker``: name, version) is paired
    with, its ``pair.countermeasure_version`` tag (serving ``@champion``: the champion pair)."""
    from speakerops.core.mlflow import client_for as client_on
    from speakerops.core.uris import parse_model_uri

    client = client_on(store)
    if spec != PAIR_SPEC:
        ref = parse_model_uri(spec)
        mv = model_version(client, ref.name, ref.version, ref.alias)
        return load_countermeasure(client, store, mv.name, str(mv.version))
    if speaker is None or speaker[1] == "local":
        raise ValueError(
            f"{PAIR_SPEC} follows the served speaker version's countermeasure, but the speaker "
            "model is a local file: serve a registered one (serve.model=models:/<name>@champion) "
            "or name the countermeasure (a file, or models:/spoof-countermeasure/<N>)"
        )
    pair = paired_cm(model_version(client, speaker[0], speaker[1], None))
    if pair is None:
        raise ValueError(
            f"{registered_model_uri(*speaker)} has no countermeasure (no {CM_VERSION_TAG} tag): "
            "pair one with `speakerops spoof register speaker="
            f"{registered_model_uri(*speaker)}` (a new version), or set serve.countermeasure: null"
        )
    return load_countermeasure(client, store, *pair)


def load_countermeasure(client, store: str, name: str, version: str):
    """(the registered CM version, its Countermeasure) checked against its ``cm_sha256`` tag."""
    mv = model_version(client, name, version, None)
    sha = mv.tags.get(CM_SHA256_TAG)
    if not sha:
        raise ValueError(f"{registered_model_uri(name, version)}: no {CM_SHA256_TAG} tag; re-register it")  # fmt: skip
    with fluent_store(store):
        path = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, tracking_uri=store)
    return mv, Countermeasure.load(Path(path) / mv.tags.get("cm_file", FILENAME), sha)


def _check(row: dict) -> dict:
    """A pair-gate row as a promotion check (the shape of :mod:`speakerops.registry.checks`)."""
    return {
        "gate": row["check"],
        "kind": "countermeasure",
        "metric": row["check"],
        "value": math.nan if row["value"] is None else row["value"],
        "low": math.nan,
        "high": math.nan,
        "threshold": row["limit"],
        "op": "max",
        "decided_on": "paired interval" if row["check"].endswith(".vs_champion") else "policy",
        "passed": bool(row["passed"]),
        "reason": row["reason"],
    }


def _refuse(gate: str, reason: str) -> list[dict]:
    return [precondition(gate, False, reason)]


def pair_checks(
    cfg: DictConfig, policy: Policy, client, cand, champ, encoders: dict[str, Any]
) -> tuple[list[dict], dict[str, Any] | None]:
    """The pair's promotion checks and what the verdict records of the pair (None: neither the
    candidate nor the champion is a pair). ``encoders``: the loaded speaker encoders
    (``candidate``, ``champion``) the promotion scored."""
    mine = paired_cm(cand)
    theirs = paired_cm(champ) if champ is not None else None
    if mine is None and theirs is None:
        return [], None
    cv = str(cand.version)
    info: dict[str, Any] = {"model_name": (mine or theirs)[0], "candidate": None, "champion": None}
    if theirs is not None:
        info["champion"] = {"version": theirs[1], "uri": registered_model_uri(*theirs)}
    if mine is None:
        return _refuse("pair.candidate_countermeasure",
                       f"champion v{champ.version} is a pair with {theirs[0]} v{theirs[1]}; candidate v{cv} "
                       "has no countermeasure, and a champion pair is only replaced by a pair: train one "
                       "(`speakerops train task=countermeasure`), register it with `speakerops spoof register "
                       f"cm=<file> speaker={registered_model_uri(cand.name, cv)}`, then promote again"), info  # fmt: skip
    store = tracking_uri(cfg.paths.registry_dir)
    cm_mv, cm = load_countermeasure(client, store, *mine)
    info["candidate"] = {"version": mine[1], "uri": registered_model_uri(*mine)}
    if (cm_mv.tags.get(SPEAKER_MODEL_TAG), cm_mv.tags.get(SPEAKER_VERSION_TAG)) != (cand.name, cv):
        return _refuse("pair.lineage", f"{registered_model_uri(*mine)} names speaker "
                       f"{cm_mv.tags.get(SPEAKER_MODEL_TAG)} v{cm_mv.tags.get(SPEAKER_VERSION_TAG)}, not "
                       f"{cand.name} v{cv}: the lineage tags disagree (fail closed)"), info  # fmt: skip
    if theirs is not None and theirs[0] != mine[0]:
        return _refuse("pair.model", f"candidate's countermeasure model {mine[0]} is not the champion's {theirs[0]}"), info  # fmt: skip
    cm_champ = _alias_version(client, mine[0])
    expected = theirs[1] if theirs is not None else None
    if cm_champ != expected:
        return _refuse("pair.champion_alias", f"alias {CHAMPION} of {mine[0]} is at v{cm_champ}, but the "
                       f"champion speaker version's countermeasure is v{expected}: the pair's aliases "
                       "were moved by hand; put them back (or roll back) before promoting"), info  # fmt: skip
    scores = score_pair(cfg, encoders["candidate"], cm)
    report = pair_report(cfg, scores)
    info["candidate"]["report"] = report
    champ_report = diff = None
    if theirs is not None:
        _, champ_cm = load_countermeasure(client, store, *theirs)
        champ_scores = score_pair(cfg, encoders["champion"], champ_cm)
        champ_report = pair_report(cfg, champ_scores)
        diff = paired_difference(cfg, scores, champ_scores)
        info["champion"]["report"] = champ_report
        info["difference"] = diff
    verdict = pair_verdict(policy, report, champ_report, diff)
    info["refused"] = verdict["refused"]
    return [_check(r) for r in verdict["checks"]], info


def _alias_version(client, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


__all__ = [
    "CM_MODEL_TAG",
    "CM_VERSION_TAG",
    "SPEAKER_MODEL_TAG",
    "SPEAKER_VERSION_TAG",
    "PAIR_SPEC",
    "load_countermeasure",
    "pair_checks",
    "paired_cm",
    "register_countermeasure",
    "resolve_countermeasure",
]
