"""Retraining tickets: Markdown + JSON in a folder, and optionally GitHub issues.

A ticket is identified by a *fingerprint* of the drift it reports:
``sha256("<model_name>|<model_version>|<sorted fired checks>")[:16]``. While a ticket with
that fingerprint is open, the same ongoing drift appends an update (an event with the new
evidence) instead of opening another ticket. Close a ticket with :func:`close_ticket` (or
``"status": "closed"`` in its JSON); the next drift with that fingerprint then opens a new one.

Files: ``<dir>/<ticket_id>.json`` (the record, with every event) and ``<dir>/<ticket_id>.md``
(regenerated from it). Ticket ids are ``drift-<fingerprint>-<n>``.

GitHub (when ``tickets.github.repo`` is set and the token env var is present): a new
ticket opens an issue, ``POST {api_url}/repos/{owner}/{repo}/issues``; an update comments,
``POST {api_url}/repos/{owner}/{repo}/issues/{number}/comments``. The issue body carries a
hidden marker ``<!-- speakerops-drift-fingerprint: <fp> -->``, so a job whose tickets folder
is fresh (a CI runner) still finds the open issue (``GET …/issues?state=open&labels=…``)
and comments on it. An issue closed on GitHub closes the local ticket.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from speakerops.drift.config import drift_defaults

MARKER = "speakerops-drift-fingerprint"


def fingerprint(model_name: str | None, model_version: str | None, fired: Iterable[str]) -> str:
    """``sha256("name|version|check1,check2,…")[:16]`` with the checks sorted."""
    key = f"{model_name}|{model_version}|{','.join(sorted(set(fired)))}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class TicketOutcome:
    action: str  # opened | updated
    ticket_id: str
    json_path: Path
    md_path: Path
    fingerprint: str
    github_url: str | None = None
    github_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "ticket_id": self.ticket_id,
            "json": str(self.json_path),
            "markdown": str(self.md_path),
            "fingerprint": self.fingerprint,
            "github_url": self.github_url,
            "github_error": self.github_error,
        }


# --------------------------------------------------------------------------- GitHub client


class GitHubError(RuntimeError):
    pass


class GitHubIssues:
    """The few GitHub REST calls the tickets need (urllib, no extra dependency)."""

    def __init__(self, repo: str, token: str, *, api_url: str, timeout_s: float) -> None:
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ValueError(f"tickets.github.repo must be 'owner/name', got {repo!r}")
        self.repo = repo
        self.token = token
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s

    def _request(
        self, method: str, path: str, body: dict | None = None, query: dict | None = None
    ) -> Any:
        url = f"{self.api_url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/vnd.github+json")
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("X-GitHub-Api-Version", "2022-11-28")
        req.add_header("User-Agent", "speakerops-drift")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise GitHubError(f"GitHub {method} {path} failed: HTTP {exc.code} {detail}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise GitHubError(f"GitHub {method} {path} failed: {exc}") from exc
        return json.loads(raw) if raw else None

    def find_open_issue(self, fp: str, label: str | None, max_pages: int = 10) -> dict | None:
        marker = f"<!-- {MARKER}: {fp} -->"
        for page in range(1, max_pages + 1):
            query = {"state": "open", "per_page": 100, "page": page}
            if label:
                query["labels"] = label
            items = self._request("GET", f"/repos/{self.repo}/issues", query=query) or []
            for it in items:
                if "pull_request" not in it and marker in (it.get("body") or ""):
                    return it
            if len(items) < 100:
                return None
        return None

    def get_issue(self, number: int) -> dict:
        return self._request("GET", f"/repos/{self.repo}/issues/{number}")

    def create_issue(self, title: str, body: str, labels: list[str]) -> dict:
        return self._request(
            "POST", f"/repos/{self.repo}/issues", {"title": title, "body": body, "labels": labels}
        )

    def comment(self, number: int, body: str) -> dict:
        return self._request("POST", f"/repos/{self.repo}/issues/{number}/comments", {"body": body})


def github_from_config(gcfg) -> tuple[GitHubIssues | None, str | None]:
    """The client when repo and token are configured, else None and (when only the repo
    is) a warning. Keys not given come from ``conf/drift/default.yaml`` (``tickets.github``)."""
    if gcfg is None or not gcfg.get("repo"):
        return None, None
    gcfg = OmegaConf.merge(drift_defaults()["tickets"]["github"], gcfg)
    token = os.environ.get(str(gcfg.token_env))
    if not token:
        return None, (
            f"tickets.github.repo is {gcfg.repo} but env {gcfg.token_env} is empty: "
            "no GitHub issue, local ticket only"
        )
    return GitHubIssues(
        str(gcfg.repo), token, api_url=str(gcfg.api_url), timeout_s=float(gcfg.timeout_s)
    ), None


# ------------------------------------------------------------------------------ rendering


def _evidence_lines(ev: dict[str, Any]) -> list[str]:
    lines = [
        f"- **When:** {ev.get('at')}",
        f"- **Window:** {ev.get('window', {}).get('start')} → {ev.get('window', {}).get('end')} "
        f"({ev.get('window', {}).get('n_rows')} rows)",
        f"- **Model:** {ev.get('model_name')} v{ev.get('model_version')}",
        f"- **Report:** `{ev.get('report')}`",
        f"- **Summary:** `{ev.get('summary')}`",
        "",
        "| check | kind | method | value | threshold | fired |",
        "|---|---|---|---|---|---|",
    ]
    for c in ev.get("checks", []):
        val = "–" if c.get("score") is None else f"{c['score']:.4g}"
        thr = "–" if c.get("threshold") is None else f"{c['threshold']:g}"
        fired = "skipped" if c.get("skipped") else ("**yes**" if c.get("drifted") else "no")
        lines.append(f"| {c['name']} | {c['kind']} | {c['method']} | {val} | {thr} | {fired} |")
    return lines


def render_issue_body(ticket: dict[str, Any], ev: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Drift on **{ticket['model_name']} v{ticket['model_version']}**: "
            f"{', '.join(ticket['checks_fired'])}. A retraining run is requested.",
            "",
            *_evidence_lines(ev),
            "",
            f"<!-- {MARKER}: {ticket['fingerprint']} -->",
        ]
    )


def render_markdown(ticket: dict[str, Any]) -> str:
    out = [
        f"# {ticket['title']}",
        "",
        f"- **Ticket:** {ticket['id']} (fingerprint `{ticket['fingerprint']}`)",
        f"- **Status:** {ticket['status']}",
        f"- **Opened:** {ticket['created_at']} — **last update:** {ticket['updated_at']} "
        f"({len(ticket['events'])} observation(s))",
        f"- **Checks fired:** {', '.join(ticket['checks_fired'])}",
    ]
    if ticket.get("github", {}).get("url"):
        out.append(f"- **GitHub:** {ticket['github']['url']}")
    for r in ticket.get("retrain", []):
        out.append(
            f"- **Retraining:** {r.get('at')} `{' '.join(r.get('command', []))}` → exit {r.get('returncode')}"
        )
    out += ["", "## Latest evidence", "", *_evidence_lines(ticket["events"][-1]), ""]
    if len(ticket["events"]) > 1:
        out += ["## History", ""]
        for ev in ticket["events"]:
            w = ev.get("window", {})
            out.append(
                f"- {ev.get('at')}: window {w.get('start')} → {w.get('end')}, report `{ev.get('report')}`"
            )
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------- storage


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(directory: Path, ticket: dict[str, Any]) -> tuple[Path, Path]:
    jp, mp = directory / f"{ticket['id']}.json", directory / f"{ticket['id']}.md"
    for path, text in (
        (jp, json.dumps(ticket, indent=2, default=str) + "\n"),
        (mp, render_markdown(ticket)),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return jp, mp


def list_tickets(tickets_dir: str | Path) -> list[dict[str, Any]]:
    d = Path(tickets_dir)
    if not d.is_dir():
        return []
    out = []
    for f in sorted(d.glob("drift-*.json")):
        try:
            out.append(json.loads(f.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"ticket file {f} is not valid JSON: {exc}") from exc
    return out


def find_open_ticket(tickets_dir: str | Path, fp: str) -> dict[str, Any] | None:
    for t in list_tickets(tickets_dir):
        if t.get("fingerprint") == fp and t.get("status") == "open":
            return t
    return None


def close_ticket(tickets_dir: str | Path, ticket_id: str, note: str = "") -> Path:
    d = Path(tickets_dir)
    with _locked(d):
        f = d / f"{ticket_id}.json"
        if not f.is_file():
            raise FileNotFoundError(f"no ticket {ticket_id} in {d}")
        t = json.loads(f.read_text())
        t["status"] = "closed"
        t["updated_at"] = _now()
        if note:
            t["closed_note"] = note
        return _write(d, t)[0]


def _new_ticket(d: Path, fp: str, ev: dict[str, Any]) -> dict[str, Any]:
    n = 1 + sum(1 for _ in d.glob(f"drift-{fp}-*.json"))
    return {
        "id": f"drift-{fp}-{n}",
        "fingerprint": fp,
        "status": "open",
        "title": (
            f"Drift on {ev.get('model_name')} v{ev.get('model_version')}: "
            f"{', '.join(ev['checks_fired'])} — retraining requested"
        ),
        "model_name": ev.get("model_name"),
        "model_version": ev.get("model_version"),
        "checks_fired": list(ev["checks_fired"]),
        "created_at": ev["at"],
        "updated_at": ev["at"],
        "events": [],
        "github": {},
        "retrain": [],
    }


def open_or_update_ticket(
    tickets_dir: str | Path,
    evidence: dict[str, Any],
    github: GitHubIssues | None = None,
    labels: list[str] | None = None,
) -> TicketOutcome:
    """Open a ticket for ``evidence`` or, when one with the same fingerprint is open, add
    the evidence to it. ``evidence`` needs ``model_name``, ``model_version``,
    ``checks_fired`` and may hold ``window``, ``checks``, ``report``, ``summary``."""
    d = Path(tickets_dir)
    ev = {"at": _now(), **evidence}
    if not ev.get("checks_fired"):
        raise ValueError("a retraining ticket needs at least one fired check")
    fp = fingerprint(ev.get("model_name"), ev.get("model_version"), ev["checks_fired"])
    with _locked(d):
        ticket = find_open_ticket(d, fp)
        gh_error = None
        if ticket is not None and github is not None and ticket.get("github", {}).get("number"):
            try:
                if github.get_issue(int(ticket["github"]["number"])).get("state") == "closed":
                    ticket["status"] = "closed"
                    ticket["closed_note"] = "issue closed on GitHub"
                    ticket["updated_at"] = ev["at"]
                    _write(d, ticket)
                    ticket = None
            except GitHubError as exc:
                gh_error = str(exc)
        action = "updated" if ticket is not None else "opened"
        if ticket is None:
            ticket = _new_ticket(d, fp, ev)
        ticket["events"].append(ev)
        ticket["updated_at"] = ev["at"]

        if github is not None and gh_error is None:
            try:
                number = ticket.get("github", {}).get("number")
                if number is None:
                    found = github.find_open_issue(fp, (labels or [None])[0])
                    if found is not None:
                        number = found["number"]
                        ticket["github"] = {
                            "repo": github.repo,
                            "number": number,
                            "url": found.get("html_url"),
                        }
                        action = "updated"
                if number is None:
                    issue = github.create_issue(
                        ticket["title"], render_issue_body(ticket, ev), list(labels or [])
                    )
                    ticket["github"] = {
                        "repo": github.repo,
                        "number": issue["number"],
                        "url": issue.get("html_url"),
                    }
                else:
                    github.comment(
                        int(number), "Drift persists.\n\n" + "\n".join(_evidence_lines(ev))
                    )
            except GitHubError as exc:
                gh_error = str(exc)
        if gh_error:
            ev["github_error"] = gh_error
        jp, mp = _write(d, ticket)
    return TicketOutcome(
        action, ticket["id"], jp, mp, fp, ticket.get("github", {}).get("url"), gh_error
    )


def record_retraining(tickets_dir: str | Path, ticket_id: str, entry: dict[str, Any]) -> None:
    """Append a retraining run (command, manifest hash, exit code) to a ticket."""
    d = Path(tickets_dir)
    with _locked(d):
        f = d / f"{ticket_id}.json"
        t = json.loads(f.read_text())
        t.setdefault("retrain", []).append({"at": _now(), **entry})
        t["updated_at"] = _now()
        _write(d, t)


def load_ticket(tickets_dir: str | Path, ticket_id: str) -> dict[str, Any]:
    f = Path(tickets_dir) / f"{ticket_id}.json"
    if not f.is_file():
        raise FileNotFoundError(f"no ticket {ticket_id} in {tickets_dir}")
    return json.loads(f.read_text())
