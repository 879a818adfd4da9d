"""A tiny in-memory Hugging Face Hub on 127.0.0.1, enough for huggingface_hub 2.4's download and upload paths.

Implements: file HEAD/GET (``/{repo}/resolve/{rev}/{path}``), repo info (``/api/models/{repo}[/revision/{rev}]``),
repo creation, branch creation, preupload (always answers uploadMode "regular", so no LFS/xet negotiation happens)
and NDJSON commits with base64 inline content. Every commit gets a sha, so revision pinning is testable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    message: str


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(sha)


class FakeHub:
    """Start with `start()`; `endpoint` is the URL to put in HF_ENDPOINT. Tests may also call `commit` directly."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []  # "METHOD path", for assertions
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._counter = 0

    # -- repository operations (used by the handler and directly by tests) --

    def create_repo(self, repo_id: str, private: bool = False) -> Repo:
        with self._lock:
            repo = Repo(repo_id, private)
            self.repos[repo_id] = repo
        self.commit(repo_id, {".gitattributes": b"*.onnx filter=lfs\n*.safetensors filter=lfs\n"}, "initial commit")
        return repo

    def commit(self, repo_id: str, files: dict[str, bytes], message: str = "update", branch: str = "main",
               deleted: tuple[str, ...] = ()) -> str:
        """New commit on `branch` adding/replacing `files`; returns its sha."""
        with self._lock:
            repo = self.repos[repo_id]
            parent = repo.commits.get(repo.branches.get(branch, ""))
            contents = dict(parent.files) if parent else {}
            for path in deleted:
                contents = {p: d for p, d in contents.items() if p != path and not p.startswith(path.rstrip("/") + "/")}
            contents.update(files)
            self._counter += 1
            sha = hashlib.sha1(f"{repo_id}:{self._counter}:{message}".encode()).hexdigest()
            repo.commits[sha] = Commit(sha, contents, message)
            repo.branches[branch] = sha
            return sha

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            fake_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "FakeHub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    fake_hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    # -- plumbing --

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, document, headers: dict | None = None) -> None:
        self._send(status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str, message: str, head: bool = False, headers: dict | None = None) -> None:
        self._send(status, json.dumps({"error": message}).encode(),
                   {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json",
                    **(headers or {})}, head=head)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _segments(self) -> list[str]:
        return [unquote(part) for part in urlsplit(self.path).path.strip("/").split("/")]

    def _repo(self, owner: str, name: str, head: bool = False) -> Repo | None:
        repo = self.fake_hub.repos.get(f"{owner}/{name}")
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", head=head)
        return repo

    # -- routes --

    def do_HEAD(self) -> None:
        self._resolve(head=True)

    def do_GET(self) -> None:
        self.fake_hub.requests.append(f"GET {self.path}")
        parts = self._segments()
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = self._repo(parts[2], parts[3])
            if repo is None:
                return
            revision = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
            commit = repo.resolve(revision)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return self._json(200, {
                "id": repo.repo_id, "modelId": repo.repo_id, "sha": commit.sha, "private": repo.private,
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            })
        self._resolve(head=False)

    def _resolve(self, head: bool) -> None:
        if head:
            self.fake_hub.requests.append(f"HEAD {self.path}")
        parts = self._segments()
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(404, "NotFound", "no such route", head=head)
        repo = self._repo(parts[0], parts[1], head=head)
        if repo is None:
            return
        commit = repo.resolve(parts[3])
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {parts[3]}", head=head)
        path = "/".join(parts[4:])
        data = commit.files.get(path)
        if data is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist", head=head,
                               headers={"X-Repo-Commit": commit.sha})
        etag = hashlib.sha256(data).hexdigest() if path.endswith((".onnx", ".safetensors")) else git_blob_sha1(data)
        self._send(200, data, {"X-Repo-Commit": commit.sha, "ETag": f'"{etag}"',
                               "Content-Type": "application/octet-stream"}, head=head)

    def do_POST(self) -> None:
        self.fake_hub.requests.append(f"POST {self.path}")
        parts = self._segments()
        body = self._body()
        if parts == ["api", "repos", "create"]:
            return self._create_repo(json.loads(body))
        if parts == ["api", "validate-yaml"]:
            return self._validate_yaml(json.loads(body)["content"])
        if parts[:2] == ["api", "models"] and len(parts) == 6:
            repo = self._repo(parts[2], parts[3])
            if repo is None:
                return
            action, revision = parts[4], parts[5]
            if action == "preupload":
                return self._preupload(repo, revision, json.loads(body))
            if action == "commit":
                return self._commit(repo, revision, body)
            if action == "branch":
                return self._branch(repo, revision, json.loads(body or b"{}"))
        self._error(404, "NotFound", "no such route")

    def _create_repo(self, payload: dict) -> None:
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        if repo_id in self.fake_hub.repos:
            return self._send(409, json.dumps({"error": "You already created this model repo",
                                               "url": f"{self.fake_hub.endpoint}/{repo_id}"}).encode(),
                              {"Content-Type": "application/json"})
        self.fake_hub.create_repo(repo_id, private=payload.get("visibility") == "private")
        self._json(200, {"url": f"{self.fake_hub.endpoint}/{repo_id}", "name": repo_id})

    def _validate_yaml(self, content: str) -> None:
        """Model card front matter: a `---` block with `key: value` lines (the real Hub checks much more)."""
        lines = content.splitlines()
        if lines[:1] == ["---"] and "---" in lines[1:]:
            block = lines[1:lines.index("---", 1)]
            if all(":" in line or line.startswith("- ") for line in block if line.strip()):
                return self._json(200, {"errors": [], "warnings": []})
        self._json(400, {"errors": [{"message": "invalid or missing YAML front matter"}], "warnings": []},
                   headers={"X-Error-Message": "invalid YAML"})

    def _branch(self, repo: Repo, branch: str, payload: dict) -> None:
        if branch in repo.branches:
            return self._error(409, "BranchExists", "Reference already exists")
        start = repo.resolve(payload.get("startingPoint") or "main")
        if start is None:
            return self._error(404, "RevisionNotFound", "Invalid starting point")
        repo.branches[branch] = start.sha
        self._json(200, {})

    def _preupload(self, repo: Repo, revision: str, payload: dict) -> None:
        current = repo.resolve(revision)
        files = []
        for item in payload["files"]:
            existing = current.files.get(item["path"]) if current else None
            files.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False,
                          "oid": git_blob_sha1(existing) if existing is not None else None})
        self._json(200, {"files": files, "commitOid": current.sha if current else None})

    def _commit(self, repo: Repo, revision: str, body: bytes) -> None:
        if revision not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        message, files, deleted = "", {}, []
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", "")
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:
                return self._error(400, "BadRequest", f"fake hub does not support {key!r} operations")
        sha = self.fake_hub.commit(repo.repo_id, files, message, branch=revision, deleted=tuple(deleted))
        self._json(200, {"commitUrl": f"{self.fake_hub.endpoint}/{repo.repo_id}/commit/{sha}", "commitOid": sha,
                         "success": True})


# -- pytest fixtures (import them into a test module: `from fakehub import fake_hub, hub_env`) -----------------

import pytest  # noqa: E402

# huggingface_hub reads these at import time into `huggingface_hub.constants`; patch both the env and the module.
_HUB_ENV = ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_DISABLE_TELEMETRY",
            "HF_HUB_DISABLE_PROGRESS_BARS")


def set_offline(monkeypatch, offline: bool) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")


@pytest.fixture
def hub_env(tmp_path, monkeypatch) -> dict:
    """A private HF_HOME and an endpoint nobody listens on: nothing can reach the real Hub.

    Returns the environment for subprocesses (`denoise` CLI runs), which read it at import time.
    """
    import socket

    from huggingface_hub import constants

    with socket.socket() as probe:  # a free port, closed again: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        dead_endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    home = tmp_path / "hf_home"
    env = {"HF_ENDPOINT": dead_endpoint, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
           "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_fake_token_for_tests", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    for key in _HUB_ENV:
        monkeypatch.setenv(key, env[key])
    point_hub_at(monkeypatch, dead_endpoint)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    set_offline(monkeypatch, False)
    return env


def point_hub_at(monkeypatch, endpoint: str) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def fake_hub(hub_env, monkeypatch):
    """A running FakeHub that huggingface_hub (in this process) talks to; `hub_env["HF_ENDPOINT"]` points at it."""
    hub = FakeHub().start()
    point_hub_at(monkeypatch, hub.endpoint)
    hub_env["HF_ENDPOINT"] = hub.endpoint
    yield hub
    hub.stop()
