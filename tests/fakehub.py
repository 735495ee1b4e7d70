"""A small fake Hugging Face Hub on 127.0.0.1, so the Hub code runs real huggingface_hub HTTP calls offline.

It emulates what huggingface_hub 2.x sends for downloads and uploads (read from its source):
- GET  /api/models/{repo}[/revision/{rev}]      repo info: {"id", "sha", "siblings", ...}   (model_info)
- GET  /api/models/{repo}/tree/{rev}            the file list, one page                      (snapshot_download)
- HEAD/GET /{repo}/resolve/{rev}/{path}         X-Repo-Commit, ETag, Content-Length, Range  (hf_hub_download)
- POST /api/repos/create, /api/validate-yaml, /api/models/{repo}/branch/{branch},
       /api/models/{repo}/preupload/{rev} (every file "regular"), /api/models/{repo}/commit/{rev} (NDJSON)
Errors carry the Hub's X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound), which huggingface_hub
turns into its typed exceptions. Repos live in memory: refs (branches and tags) → commits → {path: bytes}.

Tokens. `FakeHub.tokens` maps a token to the one namespace (user or org) it may write. A namespace that is a value
there is owned: a write to it (POST create, branch, preupload, commit) needs `Authorization: Bearer <its token>`,
and is otherwise answered as the Hub answers it:
- no Authorization header → 401 "Invalid username or password." (the Hub's answer to an anonymous write);
- a token the Hub does not know → 401 "Invalid credentials in Authorization header";
- a valid token of another namespace → 403 'You don't have the rights to create a model under the namespace "X"'
  (create) or "Forbidden: you must have write access to X/Y" (branch, preupload, commit).
Namespaces nobody owns accept every write, as before; reads (model info, tree, resolve) are always open.
What huggingface_hub 2.x makes of these (utils/_http.py hf_raise_for_status, hf_api.py): a 403 is a plain
HfHubHTTPError "403 Forbidden: <message>"; a 401 is a plain HfHubHTTPError too, but on an https endpoint one on
/api/models/... whose message is not "Invalid credentials in Authorization header" becomes RepositoryNotFoundError
(its REPO_API_REGEX needs https, so it never does here). Both keep `.response.status_code`, which is what callers
should read. create_repo(exist_ok=True) passes a 409 (the repo exists) silently, but on a 401/402/403 it asks
repo_info and returns quietly when the repo exists (reads are open): a refused token on an existing repo is first
refused by create_branch or preupload. create_branch(exist_ok=True) on a 403 lists the refs, which this fake does
not serve (404), so the 403 is raised as it came.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class _Repo:
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag → commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)


class FakeHub:
    """In-memory repos served over HTTP. `requests` logs (method, path) of every request, for assertions.
    `tokens` maps a token to the namespace it may write (see the module docstring); a test that adds one removes
    it again, since the hub lives for the whole session."""

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.tokens: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- the registry ---

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main", message: str = "") -> str:
        """Add or replace `files` on `branch` (created from main, or empty), returning the new commit hash."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, _Repo())
            parent = repo.refs.get(branch) or repo.refs.get("main")
            tree = {**(repo.commits[parent] if parent else {}), **files}
            digest = hashlib.sha1(f"{repo_id}\n{parent}\n{message}\n{len(repo.commits)}".encode())
            for path in sorted(tree):
                digest.update(f"{path} {git_blob_sha(tree[path])}\n".encode())
            sha = digest.hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            return sha

    def tag(self, repo_id: str, name: str, commit: str) -> None:
        with self._lock:
            self.repos[repo_id].refs[name] = commit

    def resolve(self, repo_id: str, revision: str) -> str | None:
        repo = self.repos[repo_id]
        if revision in repo.refs:
            return repo.refs[revision]
        return revision if revision in repo.commits else None

    # --- the server ---

    def start(self, port: int) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
            pass

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        # --- routing ---

        def _route(self, method: str) -> None:
            path = urlsplit(self.path).path
            hub.requests.append((method, path))
            parts = [unquote(p) for p in path.strip("/").split("/")]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
            if parts[:2] == ["api", "repos"] and parts[2:] == ["create"] and method == "POST":
                return self._create(json.loads(body))
            if parts[:2] == ["api", "validate-yaml"]:
                return self._json({"errors": [], "warnings": []})
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                return self._api(method, "/".join(parts[2:4]), parts[4:], body)
            if len(parts) >= 5 and parts[2] == "resolve" and method in ("HEAD", "GET"):
                return self._resolve(method, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
            self._error(404, "", "no such route")

        def _api(self, method: str, repo_id: str, rest: list[str], body: bytes) -> None:
            action, arg = (rest[0], rest[1] if len(rest) > 1 else "main") if rest else ("revision", "main")
            if method == "POST" and not self._may_write(repo_id.split("/")[0],
                                                        f"Forbidden: you must have write access to {repo_id}"):
                return
            if repo_id not in hub.repos:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if method == "POST" and action == "branch":
                return self._branch(repo_id, arg, json.loads(body or b"{}"))
            commit = hub.resolve(repo_id, arg)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {arg}")
            tree = hub.repos[repo_id].commits[commit]
            if method == "GET" and action == "revision":
                return self._json({"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                                   "siblings": [{"rfilename": p} for p in sorted(tree)], "tags": []})
            if method == "GET" and action == "tree":
                return self._json([{"type": "file", "path": p, "size": len(data), "oid": git_blob_sha(data)}
                                   for p, data in sorted(tree.items())])
            if method == "POST" and action == "preupload":
                files = json.loads(body)["files"]
                return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                              "oid": None} for f in files]})
            if method == "POST" and action == "commit":
                return self._commit(repo_id, arg, body)
            self._error(404, "", "no such route")

        # --- downloads ---

        def _resolve(self, method: str, repo_id: str, revision: str, filename: str) -> None:
            if repo_id not in hub.repos:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            commit = hub.resolve(repo_id, revision)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            data = hub.repos[repo_id].commits[commit].get(filename)
            if data is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist", {"X-Repo-Commit": commit})
            start, end, status = 0, len(data), 200
            if self.headers.get("Range", "").startswith("bytes="):
                first, _, last = self.headers["Range"][6:].partition("-")
                start, end, status = int(first), int(last) + 1 if last else len(data), 206
            self.send_response(status)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{git_blob_sha(data)}"')
            self.send_header("Content-Length", str(end - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.end_headers()
            if method == "GET":
                self.wfile.write(data[start:end])

        # --- uploads ---

        def _may_write(self, namespace: str, refusal: str) -> bool:
            """Whether this request may write to `namespace`; when not, it has been answered 401 or 403."""
            if namespace not in hub.tokens.values():  # nobody owns it: open, as the fake always was
                return True
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token:
                self._error(401, "", "Invalid username or password.")
            elif token not in hub.tokens:
                self._error(401, "", "Invalid credentials in Authorization header")
            elif hub.tokens[token] != namespace:
                self._error(403, "", refusal)
            else:
                return True
            return False

        def _create(self, payload: dict) -> None:
            namespace = payload["organization"]
            if not self._may_write(namespace, "You don't have the rights to create a model under the namespace "
                                              f'"{namespace}"'):
                return
            repo_id = f"{namespace}/{payload['name']}"
            if repo_id in hub.repos:
                # The Hub answers a conflict with the repo's url too, and create_repo(exist_ok=True) reads it.
                return self._error(409, "", "You already created this model repo",
                                   extra={"url": f"http://{self.headers['Host']}/{repo_id}"})
            hub.commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                       message="initial commit")
            self._json({"url": f"http://{self.headers['Host']}/{repo_id}"})

        def _branch(self, repo_id: str, branch: str, payload: dict) -> None:
            repo = hub.repos[repo_id]
            if branch in repo.refs:
                return self._error(409, "", "Reference already exists")
            start = hub.resolve(repo_id, payload.get("startingPoint") or "main")
            with hub._lock:
                repo.refs[branch] = start
            self._json({})

        def _commit(self, repo_id: str, branch: str, body: bytes) -> None:
            files: dict[str, bytes] = {}
            message = ""
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    message = item["value"]["summary"]
                elif item["key"] == "file" and item["value"]["encoding"] == "base64":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                else:  # LFS and deletions are never asked for: preupload says every file is "regular"
                    return self._error(400, "", f"unsupported commit operation {item['key']}")
            sha = hub.commit(repo_id, files, branch=branch, message=message)
            self._json({"commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{sha}", "commitOid": sha,
                        "pullRequestUrl": None})

        # --- responses ---

        def _json(self, data: object) -> None:
            raw = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

        def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   extra: dict | None = None) -> None:
            raw = json.dumps({"error": message, **(extra or {})}).encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(raw)

    return Handler
