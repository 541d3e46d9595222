"""Retraining tickets: dedup by fingerprint, Markdown/JSON files, and GitHub issues against
a real tiny HTTP server speaking the GitHub REST routes we use."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from omegaconf import OmegaConf

from speakerops.drift.tickets import (
    GitHubIssues,
    close_ticket,
    fingerprint,
    github_from_config,
    list_tickets,
    open_or_update_ticket,
)

TOKEN = "test-token-123"


def _evidence(fired=("embedding", "channel"), version="3", report="outputs/drift/r1/report.html"):
    return {
        "model_name": "speaker-encoder",
        "model_version": version,
        "checks_fired": list(fired),
        "checks": [
            {"name": "embedding", "kind": "embedding", "method": "model", "score": 0.91, "threshold": 0.55, "drifted": True, "skipped": None},
            {"name": "channel", "kind": "metadata", "method": "jensenshannon", "score": 0.6, "threshold": 0.1, "drifted": True, "skipped": None},
            {"name": "duration_s", "kind": "metadata", "method": "wasserstein", "score": 0.02, "threshold": 0.1, "drifted": False, "skipped": None},
        ],
        "window": {"start": "2025-03-01T00:00:00+00:00", "end": "2025-03-08T00:00:00+00:00", "n_rows": 5000},
        "report": report,
        "summary": "outputs/drift/r1/summary.json",
    }  # fmt: skip


def test_same_drift_updates_the_open_ticket_other_drift_opens_another(tmp_path):
    first = open_or_update_ticket(tmp_path, _evidence())
    again = open_or_update_ticket(
        tmp_path, _evidence(fired=("channel", "embedding"), report="r2/report.html")
    )
    assert (first.action, again.action) == ("opened", "updated")
    assert (
        first.ticket_id
        == again.ticket_id
        == f"drift-{fingerprint('speaker-encoder', '3', ['embedding', 'channel'])}-1"
    )
    tickets = list_tickets(tmp_path)
    assert len(tickets) == 1 and len(tickets[0]["events"]) == 2
    md = first.md_path.read_text()
    assert (
        "speaker-encoder v3" in md
        and "| embedding | embedding | model | 0.91 | 0.55 | **yes** |" in md
    )
    assert "r2/report.html" in md and "2 observation(s)" in md
    assert json.loads(first.json_path.read_text())["status"] == "open"

    other_checks = open_or_update_ticket(tmp_path, _evidence(fired=("snr_db",)))
    other_version = open_or_update_ticket(tmp_path, _evidence(version="4"))
    assert other_checks.action == other_version.action == "opened"
    assert len(list_tickets(tmp_path)) == 3

    close_ticket(tmp_path, first.ticket_id, note="retrained as v4")
    reopened = open_or_update_ticket(tmp_path, _evidence())
    assert reopened.action == "opened" and reopened.ticket_id.endswith("-2")
    assert {
        t["status"] for t in list_tickets(tmp_path) if t["fingerprint"] == first.fingerprint
    } == {"open", "closed"}


def test_ticket_needs_a_fired_check(tmp_path):
    with pytest.raises(ValueError, match="at least one fired check"):
        open_or_update_ticket(tmp_path, _evidence(fired=()))


class _FakeGitHub(BaseHTTPRequestHandler):
    """Just the routes the tickets use, with GitHub's shapes; state lives on the server."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, code: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        srv = self.server
        srv.calls.append((self.command, self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"message": "Bad credentials"})
            return False
        return True

    def do_GET(self):
        if not self._authorised():
            return
        url = urlparse(self.path)
        issues = self.server.issues
        if m := re.fullmatch(r"/repos/acme/voice/issues/(\d+)", url.path):
            return self._send(200, issues[int(m.group(1))])
        if url.path == "/repos/acme/voice/issues":
            q = parse_qs(url.query)
            label = q.get("labels", [None])[0]
            page, per_page = int(q.get("page", ["1"])[0]), int(q.get("per_page", ["30"])[0])
            hits = [
                i for i in issues.values()
                if i["state"] == q.get("state", ["open"])[0] and (label is None or label in i["labels"])
            ]  # fmt: skip
            return self._send(200, hits[(page - 1) * per_page : page * per_page])
        self._send(404, {"message": "Not Found"})

    def do_POST(self):
        if not self._authorised():
            return
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        issues = self.server.issues
        if self.path == "/repos/acme/voice/issues":
            n = len(issues) + 1
            issues[n] = {
                "number": n, "state": "open", "title": data["title"], "body": data["body"],
                "labels": data.get("labels", []), "html_url": f"https://github.example/acme/voice/issues/{n}",
                "comments": [],
            }  # fmt: skip
            return self._send(201, issues[n])
        if m := re.fullmatch(r"/repos/acme/voice/issues/(\d+)/comments", self.path):
            issues[int(m.group(1))]["comments"].append(data["body"])
            return self._send(201, {"id": 1, "body": data["body"]})
        self._send(404, {"message": "Not Found"})


@pytest.fixture()
def github_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGitHub)
    server.issues, server.calls = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_github_issue_opened_then_commented_and_found_from_a_fresh_runner(tmp_path, github_server):
    api = f"http://127.0.0.1:{github_server.server_address[1]}"
    gh = GitHubIssues("acme/voice", TOKEN, api_url=api, timeout_s=30)
    labels = ["drift", "retraining"]

    first = open_or_update_ticket(tmp_path / "a", _evidence(), gh, labels)
    assert first.action == "opened" and first.github_error is None
    assert first.github_url == "https://github.example/acme/voice/issues/1"
    issue = github_server.issues[1]
    assert issue["labels"] == labels and "Drift on **speaker-encoder v3**" in issue["body"]
    assert f"<!-- speakerops-drift-fingerprint: {first.fingerprint} -->" in issue["body"]

    second = open_or_update_ticket(tmp_path / "a", _evidence(report="r2/report.html"), gh, labels)
    assert second.action == "updated" and len(github_server.issues) == 1
    assert len(issue["comments"]) == 1 and "r2/report.html" in issue["comments"][0]

    # a CI runner starts with an empty tickets folder: it finds the open issue by its marker
    fresh = open_or_update_ticket(tmp_path / "b", _evidence(report="r3/report.html"), gh, labels)
    assert fresh.action == "updated" and len(github_server.issues) == 1
    assert len(issue["comments"]) == 2 and fresh.github_url == first.github_url

    # closing the issue on GitHub closes the ticket; the next drift opens a new issue
    issue["state"] = "closed"
    after = open_or_update_ticket(tmp_path / "a", _evidence(report="r4/report.html"), gh, labels)
    assert after.action == "opened" and after.ticket_id.endswith("-2")
    assert len(github_server.issues) == 2 and github_server.issues[2]["state"] == "open"
    assert {t["status"] for t in list_tickets(tmp_path / "a")} == {"open", "closed"}
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in github_server.calls)
    methods = [(m, p.split("?")[0]) for m, p, _ in github_server.calls]
    assert ("POST", "/repos/acme/voice/issues") in methods and (
        "POST",
        "/repos/acme/voice/issues/1/comments",
    ) in methods


def test_github_failure_keeps_the_local_ticket_and_reports_it(tmp_path, github_server):
    api = f"http://127.0.0.1:{github_server.server_address[1]}"
    gh = GitHubIssues("acme/voice", "wrong-token", api_url=api, timeout_s=30)
    out = open_or_update_ticket(tmp_path, _evidence(), gh, ["drift"])
    assert (
        out.github_error
        and "HTTP 401" in out.github_error
        and "Bad credentials" in out.github_error
    )
    assert out.json_path.is_file() and not github_server.issues
    assert "github_error" in json.loads(out.json_path.read_text())["events"][-1]


def test_github_config(monkeypatch):
    cfg = OmegaConf.create(
        {
            "repo": "acme/voice",
            "token_env": "SPEAKEROPS_TEST_GH_TOKEN",
            "api_url": "http://x",
            "labels": [],
        }
    )
    monkeypatch.delenv("SPEAKEROPS_TEST_GH_TOKEN", raising=False)
    client, warning = github_from_config(cfg)
    assert client is None and "SPEAKEROPS_TEST_GH_TOKEN is empty" in warning
    monkeypatch.setenv("SPEAKEROPS_TEST_GH_TOKEN", "abc")
    client, warning = github_from_config(cfg)
    assert warning is None and client.repo == "acme/voice" and client.token == "abc"
    assert github_from_config(OmegaConf.create({"repo": None})) == (None, None)
    with pytest.raises(ValueError, match="owner/name"):
        GitHubIssues("not-a-repo", "t", api_url="https://api.github.com", timeout_s=30)
