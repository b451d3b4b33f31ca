"""A local HTTP stand-in for the few Hugging Face Hub endpoints that publishing and loading use.

It speaks the Hub's wire protocol as ``huggingface_hub`` 2.4 uses it, so the real client code runs
unchanged against ``HF_ENDPOINT=http://127.0.0.1:PORT``:

* write: ``POST /api/repos/create``, ``POST /api/validate-yaml`` (metadata parsed by ``ModelCard``),
  ``POST /api/models/{repo}/preupload/{rev}`` (binary files go to LFS, as on the Hub),
  ``POST /{repo}.git/info/lfs/objects/batch`` + ``PUT``/verify of the LFS objects (basic transfer;
  set ``HF_HUB_DISABLE_XET=1``: the Xet storage protocol is not imitated),
  ``POST /api/models/{repo}/commit/{rev}`` (NDJSON) and ``POST /api/models/{repo}/tag/{rev}``;
* read: ``GET /api/models/{repo}/revision/{rev}``, ``GET /api/models/{repo}/tree/{rev}`` and
  ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``.

Every request needs ``Authorization: Bearer <token>`` when the stand-in was given a token for writes.
Repos live in memory; ``commits`` keeps each commit's files so tests can inspect exactly what arrived.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from huggingface_hub import ModelCard

REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, bytes]
    lfs_paths: set[str]


@dataclass
class Repo:
    private: bool
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision) or self.tags.get(revision) or revision
        return next((c for c in self.commits if c.oid == oid), None)


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that can also drop the connections its clients keep alive."""

    daemon_threads = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close every open connection, so a pooled keep-alive connection cannot outlive the server."""
        with self._open_lock:
            open_now = list(self._open)
        for connection in open_now:
            with contextlib.suppress(OSError):  # already closed by its client
                connection.shutdown(socket.SHUT_RDWR)


class HubStandIn:
    """Start with ``with HubStandIn(token="hf_test") as hub:``; ``hub.endpoint`` is its base URL."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop as an unreachable Hub would: no new connections, and none of the open ones answers again."""
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()

    # ------------------------------------------------------------ write side

    def create_repo(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        repo_id = f"{body['organization']}/{body['name']}"
        with self._lock:
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.endpoint}/{repo_id}"}
            self.repos[repo_id] = Repo(private=body.get("visibility") == "private")
        return 200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id}

    def preupload(self, repo_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        files = []
        for entry in body["files"]:
            binary = b"\0" in base64.b64decode(entry["sample"])  # the Hub sends binary files to LFS
            files.append({"path": entry["path"], "uploadMode": "lfs" if binary else "regular", "shouldIgnore": False})
        return 200, {"files": files}

    def lfs_batch(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        objects = []
        for obj in body["objects"]:
            href = f"{self.endpoint}/_lfs/{obj['oid']}"
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs_objects:  # no "actions": the object is already stored
                entry["actions"] = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def commit(self, repo_id: str, revision: str, lines: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        repo = self.repos[repo_id]
        parent = repo.resolve(revision)
        files = dict(parent.files) if parent else {}
        lfs_paths = set(parent.lfs_paths) if parent else set()
        message = ""
        for line in lines:
            value = line["value"]
            if line["key"] == "header":
                message = value["summary"]
            elif line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                lfs_paths.discard(value["path"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    return 400, {"error": f"LFS object {value['oid']} was never uploaded"}
                files[value["path"]] = self.lfs_objects[value["oid"]]
                lfs_paths.add(value["path"])
            else:
                return 400, {"error": f"operation {line['key']} is not supported by the stand-in"}
        digest = hashlib.sha1((parent.oid if parent else "").encode())
        for path in sorted(files):
            digest.update(path.encode() + hashlib.sha256(files[path]).digest())
        oid = digest.hexdigest()
        with self._lock:
            repo.commits.append(Commit(oid, message, files, lfs_paths))
            repo.branches[revision] = oid
        return 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}"}

    # ------------------------------------------------------------ read side

    def tree_entry(self, commit: Commit, path: str) -> dict[str, Any]:
        data = commit.files[path]
        entry = {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
        if path in commit.lfs_paths:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry


def _handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        # -------------------------------------------------------- plumbing

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None, body=None) -> None:
            data = body if body is not None else json.dumps(payload if payload is not None else {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if body is None else "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _authorized(self) -> bool:
            if hub.token is None or self.headers.get("Authorization") == f"Bearer {hub.token}":
                return True
            self._send(401, {"error": "Invalid credentials in Authorization header"})
            return False

        def _route(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((method, path))
            body = self._body() if method in ("POST", "PUT") else b""
            for pattern, handler in ROUTES[method]:
                match = re.fullmatch(pattern, path)
                if match:
                    handler(self, body, **match.groupdict())
                    return
            self._send(404, {"error": f"no stand-in route for {method} {path}"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        # -------------------------------------------------------- endpoints

        def create(self, body: bytes) -> None:
            if self._authorized():
                self._send(*hub.create_repo(json.loads(body)))

        def validate_yaml(self, body: bytes) -> None:
            try:
                ModelCard(json.loads(body)["content"], ignore_metadata_errors=False)
            except Exception as err:  # whatever the parser rejects, the Hub rejects too
                self._send(400, {"errors": [{"message": str(err)}], "warnings": []})
                return
            self._send(200, {"errors": [], "warnings": []})

        def preupload(self, body: bytes, repo: str, rev: str) -> None:
            if not self._authorized():
                return
            if repo not in hub.repos:
                self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return
            self._send(*hub.preupload(repo, json.loads(body)))

        def lfs_batch(self, body: bytes, repo: str) -> None:
            if self._authorized():
                self._send(*hub.lfs_batch(json.loads(body)))

        def lfs_put(self, body: bytes, oid: str) -> None:
            if hashlib.sha256(body).hexdigest() != oid:
                self._send(400, {"error": "content does not match its oid"})
                return
            hub.lfs_objects[oid] = body
            self._send(200, {})

        def lfs_verify(self, body: bytes, oid: str) -> None:
            request = json.loads(body)
            ok = oid in hub.lfs_objects and len(hub.lfs_objects[oid]) == request["size"]
            self._send(200 if ok else 404, {})

        def commit(self, body: bytes, repo: str, rev: str) -> None:
            if not self._authorized():
                return
            if "application/x-ndjson" not in self.headers.get("Content-Type", ""):
                self._send(400, {"error": "commit payload must be NDJSON"})
                return
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            self._send(*hub.commit(repo, rev, lines))

        def tag(self, body: bytes, repo: str, rev: str) -> None:
            if not self._authorized():
                return
            commit = hub.repos[repo].resolve(rev)
            name = json.loads(body)["tag"]
            if name in hub.repos[repo].tags:
                self._send(409, {"error": f"Tag {name} already exists"})
                return
            hub.repos[repo].tags[name] = commit.oid
            self._send(200, {})

        def _commit_or_404(self, repo: str, rev: str) -> Commit | None:
            commit = hub.repos[repo].resolve(rev) if repo in hub.repos else None
            if commit is None:
                code = "RevisionNotFound" if repo in hub.repos else "RepoNotFound"
                self._send(404, {"error": f"{repo}@{rev} not found"}, {"X-Error-Code": code})
            return commit

        def info(self, body: bytes, repo: str, rev: str) -> None:
            commit = self._commit_or_404(repo, rev)
            if commit:
                siblings = [{"rfilename": path} for path in sorted(commit.files)]
                self._send(200, {"id": repo, "sha": commit.oid, "siblings": siblings, "private": False})

        def tree(self, body: bytes, repo: str, rev: str) -> None:
            commit = self._commit_or_404(repo, rev)
            if commit:
                self._send(200, [hub.tree_entry(commit, path) for path in sorted(commit.files)])

        def resolve(self, body: bytes, repo: str, rev: str, path: str) -> None:
            commit = self._commit_or_404(repo, rev)
            if not commit:
                return
            if path not in commit.files:
                self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                return
            entry = hub.tree_entry(commit, path)
            etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
            headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"'}
            self._send(200, headers=headers, body=commit.files[path])

    ROUTES = {
        "POST": [
            (r"/api/repos/create", Handler.create),
            (r"/api/validate-yaml", Handler.validate_yaml),
            (rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", Handler.preupload),
            (rf"/{REPO}\.git/info/lfs/objects/batch", Handler.lfs_batch),
            (r"/_lfs/(?P<oid>[0-9a-f]{64})/verify", Handler.lfs_verify),
            (rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", Handler.commit),
            (rf"/api/models/{REPO}/tag/(?P<rev>[^/]+)", Handler.tag),
        ],
        "PUT": [(r"/_lfs/(?P<oid>[0-9a-f]{64})", Handler.lfs_put)],
        "GET": [
            (rf"/api/models/{REPO}/revision/(?P<rev>[^/]+)", Handler.info),
            (rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)", Handler.tree),
            (rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", Handler.resolve),
        ],
        "HEAD": [(rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", Handler.resolve)],
    }
    return Handler
