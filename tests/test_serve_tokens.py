"""Bearer tokens (src/serve/tokens.py): a labelled token replaces its predecessor instead of
piling up, a revoked or replaced token stops working in a running TokenBook without a reload,
and a tokens file of the first layout (bare digests) still authenticates."""

from __future__ import annotations

import hashlib
import json

import pytest

from speakerops.cli import main as cli_main
from speakerops.serve.errors import ServeError
from speakerops.serve.tokens import ADMIN, TokenBook, issue_token, revoke_token


def _code(book: TokenBook, tenant: str, token: str) -> str:
    with pytest.raises(ServeError) as exc:
        book.authenticate(tenant, f"Bearer {token}")
    return exc.value.code


def test_labelled_tokens_replace_and_revoked_tokens_stop_working(tmp_path):
    path = tmp_path / "tokens.json"
    keep_id, keep = issue_token(path, "acme")
    book = TokenBook(path)  # a running service's book: never told to reload
    first_id, first = issue_token(path, "acme", label="drift-demo", replace=True)
    assert book.authenticate("acme", f"Bearer {first}") == first_id
    second_id, second = issue_token(path, "acme", label="drift-demo", replace=True)
    doc = json.loads(path.read_text())
    assert set(doc["acme"]) == {keep_id, second_id}  # the demo's earlier token is gone
    assert doc["acme"][second_id]["label"] == "drift-demo"
    assert first not in path.read_text() and second not in path.read_text()  # hashes only
    assert _code(book, "acme", first) == "auth.invalid"
    assert book.authenticate("acme", f"Bearer {second}") == second_id
    assert revoke_token(path, second_id) == "acme" and revoke_token(path, second_id) is None
    assert _code(book, "acme", second) == "auth.invalid"
    assert book.authenticate("acme", f"Bearer {keep}") == keep_id  # others untouched
    with pytest.raises(ValueError, match="label"):
        issue_token(path, "acme", replace=True)


def test_first_layout_still_reads_and_cli_revokes(tmp_path, capsys):
    path = tmp_path / "registry" / "serve" / "tokens.json"
    path.parent.mkdir(parents=True)
    token = "a-token-of-the-first-layout"
    path.write_text(
        json.dumps({"acme": {"0123456789ab": hashlib.sha256(token.encode()).hexdigest()}})
    )
    book = TokenBook(path)
    assert book.authenticate("acme", f"Bearer {token}") == "0123456789ab"
    admin_id, admin = issue_token(path, ADMIN)  # rewrites the file in the current layout
    assert book.authenticate(ADMIN, f"Bearer {admin}") == admin_id
    assert book.authenticate("acme", f"Bearer {token}") == "0123456789ab"
    assert (
        cli_main(
            ["serve-token", f"revoke={admin_id}", f"paths.registry_dir={tmp_path / 'registry'}"]
        )
        == 0
    )
    assert f"token id {admin_id} revoked" in capsys.readouterr().out
    assert _code(book, ADMIN, admin) == "auth.invalid"
