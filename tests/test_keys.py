"""The one key provider: envelope encryption, rotation, pseudonyms, clear refusals."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from speakerops.core import keys
from speakerops.core.keys import KeyMaterialError, Keyring


def _ring(tmp_path: Path, master: bytes | None = None) -> Keyring:
    return Keyring(tmp_path / "keyring.json", master or bytes(range(32)))


def test_round_trip_binds_context_and_never_stores_plaintext(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    emb = np.linspace(-1, 1, 192, dtype=np.float32).reshape(1, 192)
    blob = ring.encrypt_array("production-log", emb, aad=b"v1|spk-a")
    assert emb.tobytes() not in blob and emb[0, :8].tobytes() not in blob
    np.testing.assert_array_equal(ring.decrypt_array(blob, aad=b"v1|spk-a"), emb)
    # the same blob bound to another row (speaker / version) does not decrypt
    with pytest.raises(KeyMaterialError, match="does not authenticate"):
        ring.decrypt_array(blob, aad=b"v1|spk-b")
    # one flipped bit anywhere is refused, never garbage
    for pos in (len(blob) - 1, 30, 4):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(KeyMaterialError):
            ring.decrypt_array(bytes(bad), aad=b"v1|spk-a")
    # the keyring holds the data key only wrapped
    kid, key = ring.active_key("production-log")
    text = (tmp_path / "keyring.json").read_text()
    assert key.hex() not in text and keys._b64(key) not in text and kid in text


def test_wrong_or_missing_master_key_fails_clearly(tmp_path: Path, monkeypatch) -> None:
    blob = _ring(tmp_path).encrypt("reference", b"secret embedding bytes")
    wrong = _ring(tmp_path, master=bytes(32))
    with pytest.raises(KeyMaterialError, match="not wrapped for this master key"):
        wrong.decrypt(blob)
    monkeypatch.delenv(keys.MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv(keys.MASTER_KEY_FILE_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nohome"))
    with pytest.raises(KeyMaterialError, match="no master key: set SPEAKEROPS_DATA_KEY"):
        keys.load_master_key()
    monkeypatch.setenv(keys.MASTER_KEY_ENV, "not-a-key")
    with pytest.raises(KeyMaterialError, match="not a 32-byte key"):
        keys.load_master_key()


def test_key_file_and_env_forms(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(keys.MASTER_KEY_ENV, raising=False)
    path = keys.write_key_file(tmp_path / "k" / "master.key")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(KeyMaterialError, match="already there"):
        keys.write_key_file(path)
    monkeypatch.setenv(keys.MASTER_KEY_FILE_ENV, str(path))
    from_file = keys.load_master_key()
    assert from_file == bytes.fromhex(path.read_text().strip())
    monkeypatch.setenv(keys.MASTER_KEY_ENV, keys._b64(from_file))
    assert keys.load_master_key() == from_file  # base64 form of the same key


def test_master_rotation_rewraps_without_reencrypting_and_retires(tmp_path: Path) -> None:
    old = _ring(tmp_path)
    blobs = {p: old.encrypt(p, p.encode() * 3) for p in ("production-log", "tenant:acme")}
    name = old.pseudonym("speaker-17")
    new_master = bytes(range(32, 64))
    assert old.rotate_master(new_master) == 3  # the two data keys and the pseudonym key
    new = _ring(tmp_path, master=new_master)
    for p, blob in blobs.items():
        assert new.decrypt(blob) == p.encode() * 3  # readers on the new key
        assert _ring(tmp_path).decrypt(blob) == p.encode() * 3  # and still on the old one
    assert new.pseudonym("speaker-17") == name  # pseudonyms survive rotation
    old.rotate_master(new_master, retire_old=True)
    with pytest.raises(KeyMaterialError, match="retired"):
        _ring(tmp_path).decrypt(blobs["production-log"])
    assert new.decrypt(blobs["tenant:acme"]) == b"tenant:acme" * 3


def test_data_key_rotation_keeps_old_blobs_readable(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    before = ring.encrypt("reference", b"old")
    kid_old = ring.active_key("reference")[0]
    kid_new = ring.rotate_data_key("reference")
    assert kid_new != kid_old and ring.active_key("reference")[0] == kid_new
    after = ring.encrypt("reference", b"new")
    assert ring.decrypt(before) == b"old" and ring.decrypt(after) == b"new"
    with pytest.raises(KeyMaterialError, match="pseudonyms"):
        ring.rotate_data_key("pseudonym")


def test_pseudonyms_are_keyed_stable_and_env_overridable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(keys.PSEUDONYM_KEY_ENV, raising=False)
    ring = _ring(tmp_path)
    a, b = ring.pseudonym("1089"), ring.pseudonym("1089")
    assert a == b and len(a) == 64 and "1089" not in a
    assert _ring(tmp_path / "other").pseudonym("1089") != a  # another store, another key
    monkeypatch.setenv(keys.PSEUDONYM_KEY_ENV, "a shared pseudonym secret")
    assert ring.pseudonym("1089") == keys.pseudonym("1089", b"a shared pseudonym secret")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        keys.check_pseudonym_key("short")


def _create(path: str, master: bytes, q) -> None:
    q.put(Keyring(path, master).active_key("tenant:race")[0])


def test_concurrent_first_use_creates_one_key(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    path = str(tmp_path / "keyring.json")
    procs = [ctx.Process(target=_create, args=(path, bytes(range(32)), q)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    ids = {q.get(timeout=5) for _ in procs}
    doc = json.loads(Path(path).read_text())
    assert len(ids) == 1 and len(doc["keys"]) == 1


def test_malformed_keyring_and_foreign_blob_are_named(tmp_path: Path) -> None:
    (tmp_path / "keyring.json").write_text("{not json")
    with pytest.raises(KeyMaterialError, match="keyring.json: keyring is not valid JSON"):
        _ring(tmp_path).encrypt("x", b"y")
    blob = _ring(tmp_path / "a").encrypt("x", b"y")
    with pytest.raises(KeyMaterialError, match="no data key"):
        _ring(tmp_path / "b").decrypt(blob, what="log part")
    with pytest.raises(KeyMaterialError, match="log part: not a speakerops encrypted blob"):
        _ring(tmp_path).decrypt(b"plain", what="log part")


def test_keys_and_audit_commands(tmp_path: Path, monkeypatch, capsys) -> None:
    """`speakerops keys init/rotate/status` on a key file, then `audit verify` on a tampered log."""
    from speakerops.cli import main
    from speakerops.registry import audit

    monkeypatch.delenv(keys.MASTER_KEY_ENV, raising=False)
    monkeypatch.setenv(keys.MASTER_KEY_FILE_ENV, str(tmp_path / "master.key"))
    store = [f"paths.registry_dir={tmp_path / 'registry'}"]
    assert main(["keys", "init", *store]) == 0
    assert "wrote a new master key" in capsys.readouterr().out
    ring = keys.open_keyring(tmp_path / "registry")
    blob = ring.encrypt("reference", b"kept across rotation")
    rec = audit.append_audit(
        tmp_path / "registry" / "audit.jsonl", {"action": "promote"}, keyring=ring
    )
    assert main(["keys", "rotate", *store]) == 0
    assert "old master still unwraps" in capsys.readouterr().out
    rotated = keys.open_keyring(tmp_path / "registry")  # reads the new key file
    assert rotated.master_id != ring.master_id
    assert rotated.decrypt(blob) == b"kept across rotation"
    assert main(["keys", "status", *store]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {k["purpose"] for k in status["keys"]} == {"reference", "audit"}
    assert all(len(k["masters"]) == 2 for k in status["keys"])

    assert main(["audit", "verify", *store]) == 0
    assert "2 record(s) verified" in capsys.readouterr().out  # the promote and the rotation
    log = tmp_path / "registry" / "audit.jsonl"
    assert [r["action"] for r in audit.read_audit_log(log)] == ["promote", "keys.rotate"]
    log.write_text(log.read_text().replace('"retire": false', '"retire": true'))
    assert main(["audit", "verify", *store]) == 1
    assert "MAC does not verify" in capsys.readouterr().err
    assert rec["head"].startswith("1:")
