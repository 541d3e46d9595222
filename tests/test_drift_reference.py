"""Reference folders and resolving the champion's reference through a real MLflow store."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from speakerops.drift.reference import load_champion_reference
from speakerops.registry.reference import load_reference, pseudonymise_ids, save_reference

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _sample(n: int = 40, dim: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    meta = pd.DataFrame(
        {
            "duration_s": rng.uniform(2, 8, n),
            "sample_rate": [16000] * n,
            "snr_db": rng.normal(25, 5, n),
            "channel": ["mic"] * n,
            "speaker": [f"s{i % 5}" for i in range(n)],
            "set": ["eval"] * (n // 2) + ["calibration"] * (n - n // 2),
        }
    )
    scores = pd.DataFrame({"set": ["eval"] * 3, "label": [1, 0, 0], "score": [0.81, 0.12, -0.05]})
    return emb, meta, scores


def test_round_trip_and_manifest(tmp_path, keyring):
    emb, meta, scores = _sample()
    out = save_reference(
        tmp_path / "ref", emb, meta, scores, keyring=keyring, model_name="speaker-encoder",
        model_version=4,
    )  # fmt: skip
    ref = load_reference(out, keyring=keyring)
    np.testing.assert_array_equal(ref.embeddings, emb)
    # speaker ids only as keyed pseudonyms (grouping kept: 5 speakers, 5 pseudonyms)
    pd.testing.assert_frame_equal(ref.metadata, pseudonymise_ids(meta, keyring.pseudonym_key()))
    assert (
        ref.metadata["speaker"].nunique() == 5
        and not ref.metadata["speaker"].isin(meta["speaker"]).any()
    )
    pd.testing.assert_frame_equal(ref.scores, scores)
    assert (ref.dim, len(ref), ref.model_name, ref.model_version) == (
        12,
        40,
        "speaker-encoder",
        "4",
    )
    assert ref.info["n_speakers"] == 5 and set(ref.info["files"]) == {
        "embeddings.enc",
        "metadata.parquet",
        "scores.parquet",
    }


def test_tampered_or_incomplete_references_are_refused(tmp_path, keyring):
    emb, meta, scores = _sample()
    out = save_reference(tmp_path / "ref", emb, meta, scores, keyring=keyring)
    blob = bytearray((out / "embeddings.enc").read_bytes())
    blob[-1] ^= 1
    (out / "embeddings.enc").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="embeddings.enc does not match its SHA-256"):
        load_reference(out, keyring=keyring)
    out = save_reference(tmp_path / "ref", emb, meta, scores, keyring=keyring)
    (out / "scores.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="scores.parquet is missing"):
        load_reference(out, keyring=keyring)
    with pytest.raises(FileNotFoundError, match="reference.json is missing"):
        load_reference(tmp_path, keyring=keyring)


def test_reference_holds_no_plaintext_embeddings_or_ids(tmp_path, keyring):
    """Today's reference stored raw speaker / utterance ids and plaintext embeddings."""
    from speakerops.core.keys import KeyMaterialError, Keyring

    emb, meta, scores = _sample()
    meta["speaker"] = [f"walter-{i % 5}" for i in range(len(meta))]
    meta["utt_id"] = [f"walter-{i % 5}-utt{i}" for i in range(len(meta))]
    scores["enroll"] = ["walter-0-utt0", "walter-1-utt1", "walter-2-utt2"]
    out = save_reference(tmp_path / "ref", emb, meta, scores, keyring=keyring)
    for f in out.iterdir():
        raw = f.read_bytes()
        assert b"walter" not in raw, f.name
        assert all(row[:2].tobytes() not in raw for row in emb), f.name
    other = Keyring(tmp_path / "stranger.json", bytes(range(32)))
    with pytest.raises(KeyMaterialError, match="no data key"):
        load_reference(out, keyring=other)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((1, 4)),), r"\[N>=2, D\]"),
        ((np.full((3, 4), np.nan),), "finite"),
        ((np.zeros((3, 4)), pd.DataFrame({"a": [1, 2]})), "one row per embedding"),
        (
            (np.zeros((3, 4)), pd.DataFrame({"a": [1, 2, 3]}), pd.DataFrame({"x": [1]})),
            "'score' column",
        ),
    ],
)
def test_bad_reference_inputs(tmp_path, keyring, args, message):
    defaults = (np.zeros((3, 4)), pd.DataFrame({"a": [1, 2, 3]}), pd.DataFrame({"score": [0.1]}))
    full = args + defaults[len(args) :]
    with pytest.raises(ValueError, match=message):
        save_reference(tmp_path / "r", *full, keyring=keyring)


def test_champion_reference_from_a_real_mlflow_registry(tmp_path, keyring):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment(
        "registry-test", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    client.create_registered_model("speaker-encoder")

    versions = []
    for seed in (1, 2):
        emb, meta, scores = _sample(seed=seed)
        folder = save_reference(tmp_path / f"ref{seed}", emb, meta, scores, keyring=keyring)
        run = client.create_run(exp)
        client.log_artifacts(run.info.run_id, str(folder), artifact_path="reference")
        client.set_terminated(run.info.run_id)
        mv = client.create_model_version(
            "speaker-encoder", source=f"{run.info.artifact_uri}/reference", run_id=run.info.run_id
        )
        versions.append((mv.version, run.info.run_id, emb))

    client.set_registered_model_alias("speaker-encoder", "champion", versions[0][0])
    ref, version = load_champion_reference("speaker-encoder", tracking_uri=uri, keyring=keyring)
    assert version == str(versions[0][0]) == ref.model_version == "1"
    assert ref.run_id == versions[0][1] and ref.model_name == "speaker-encoder"
    np.testing.assert_array_equal(ref.embeddings, versions[0][2])

    client.set_registered_model_alias("speaker-encoder", "champion", versions[1][0])  # promotion
    ref2, version2 = load_champion_reference(
        "speaker-encoder", "champion", tracking_uri=uri, keyring=keyring
    )
    assert version2 == "2"
    np.testing.assert_array_equal(ref2.embeddings, versions[1][2])

    with pytest.raises(LookupError, match="no model version 'speaker-encoder@shadow'"):
        load_champion_reference("speaker-encoder", "shadow", tracking_uri=uri, keyring=keyring)

    bare = client.create_run(exp)  # a version whose run logged no reference
    mv3 = client.create_model_version(
        "speaker-encoder", source=bare.info.artifact_uri, run_id=bare.info.run_id
    )
    client.set_registered_model_alias("speaker-encoder", "challenger", mv3.version)
    with pytest.raises(LookupError, match="has no 'reference' artifacts"):
        load_champion_reference("speaker-encoder", "challenger", tracking_uri=uri, keyring=keyring)

    # the drift job resolves the same champion: traffic of the new champion (v2) is
    # compared with v2's reference, traffic still served by v1 is refused. v2's traffic sits
    # far from the reference (every embedding dimension shifted by 1.5 sd), so the
    # comparison's verdict is certain: drift, exit code 1 (two same-distribution samples of
    # 40 and 60 rows may or may not cross the classifier's threshold)
    from speakerops.core.keys import open_keyring
    from speakerops.drift.log import append_production_log
    from speakerops.drift.run import main

    for version, day in (("2", "2025-04-01"), ("1", "2025-04-02")):
        emb, meta, _ = _sample(n=60, seed=10 + int(version))
        if version == "2":
            emb = emb + 1.5
        append_production_log(
            tmp_path / "log", emb, keyring=open_keyring(tmp_path / "registry"),
            utt_ids=[f"r{i}" for i in range(60)], model_name="speaker-encoder",
            model_version=version, durations_s=meta["duration_s"], sample_rates=meta["sample_rate"],
            snr_db=meta["snr_db"], channels=meta["channel"], timestamp=f"{day}T10:00:00Z",
        )  # fmt: skip
    cfg = {
        "paths": {"registry_dir": str(tmp_path / "registry")},
        "drift": {
            "log_dir": str(tmp_path / "log"),
            "output_dir": str(tmp_path / "out"),
            "progress": False,
            "reference": {"source": "mlflow", "tracking_uri": uri},
            "window": {"start": "2025-04-01", "end": "2025-04-02", "min_rows": 20},
            "embedding": {"one_per_speaker": False, "min_rows": 10},
            "report": {"enabled": False},
            "tickets": {"dir": str(tmp_path / "tickets")},
        },
    }
    assert main(cfg) == 1
    cfg["drift"]["window"].update(start="2025-04-02", end="2025-04-03")
    assert main(cfg) == 2
    import json

    ok, refused = (
        json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("*/summary.json"))
    )
    assert ok["model"] == {
        "name": "speaker-encoder",
        "version": "2",
        "run_id": versions[1][1],
        "reference_source": "mlflow",
        "reference_rows": 40,
    }
    assert ok["status"] in ("drift", "no_drift") and ok["window"]["n_rows"] == 60
    assert ok["status"] == "drift" and "embedding" in ok["result"]["fired"]
    assert ok["ticket"]["ticket_id"] and len(list((tmp_path / "tickets").glob("*.md"))) == 1
    assert (
        refused["status"] == "refused"
        and "from speaker-encoder v1 but the reference belongs to speaker-encoder v2"
        in refused["reason"]
    )
