"""A Hugging Face Hub API server on 127.0.0.1 for tests: what the real huggingface_hub client calls to
create a repo, upload (preupload, LFS batch + basic transfer, NDJSON commit), read model info and
download files. Point a client at it with HF_ENDPOINT (and HF_HUB_DISABLE_XET=1: the Xet storage
protocol is not served, so uploads take the LFS path).

Only one user exists; every write needs its token, as do reads of private repos.
"""

import base64
import hashlib
import json
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USER = "tester"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".png", ".gguf")


def _signature(token: str, oid: str) -> str:
    return hashlib.sha256(f"{token}:{oid}".encode()).hexdigest()[:32]


class Repo:
    def __init__(self, repo_id: str, private: bool):
        self.repo_id, self.private = repo_id, private
        self.files: dict[str, bytes] = {}
        self.lfs_paths: set[str] = set()
        self.sha = hashlib.sha1(repo_id.encode()).hexdigest()
        self.commits: list[str] = []


class LocalHub:
    """Start with `with LocalHub(token) as hub:`; hub.endpoint is the HF_ENDPOINT to use."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _handler_for(hub: LocalHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        # -- helpers -------------------------------------------------------------------------------
        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, payload=None, headers: dict | None = None, body: bytes | None = None):
            if body is None:
                body = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, message: str, code: str | None = None):
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, {"error": message}, headers)

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {hub.token}"

        def _repo(self, repo_id: str, write: bool = False) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and not self._authorized()):
                self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
                return None
            if write and not self._authorized():
                self._error(401, "Invalid credentials in Authorization header")
                return None
            return repo

        # -- routes --------------------------------------------------------------------------------
        def do_POST(self):
            path = self.path.split("?")[0]
            body = self._body()
            if path == "/api/repos/create":
                return self._create_repo(json.loads(body))
            if path == "/api/validate-yaml":
                return self._validate_yaml(json.loads(body))
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path):
                return self._preupload(match.group(1), json.loads(body))
            if match := re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
                return self._lfs_batch(match.group(1), json.loads(body))
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path):
                return self._commit(match.group(1), body)
            self._error(404, f"no route POST {path}")

        def do_PUT(self):
            # Like S3, the upload URL is pre-signed: the client sends no Authorization header with the PUT.
            if match := re.fullmatch(r"/lfs-upload/([0-9a-f]{64})\?signature=([0-9a-f]+)", self.path):
                if match.group(2) != _signature(hub.token, match.group(1)):
                    return self._error(403, "Bad upload signature")
                content = self._body()
                if hashlib.sha256(content).hexdigest() != match.group(1):
                    return self._error(400, "sha256 does not match the object id")
                with hub.lock:
                    hub.lfs_store[match.group(1)] = content
                return self._send(200, {})
            self._error(404, f"no route PUT {self.path}")

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/api/whoami-v2":
                if not self._authorized():
                    return self._error(401, "Invalid credentials")
                return self._send(200, {"name": USER, "type": "user", "orgs": [], "auth": {"type": "access_token"}})
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
                return self._model_info(match.group(1))
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path):
                return self._tree(match.group(1))
            if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                return self._resolve(match.group(1), match.group(3))
            self._error(404, f"no route GET {path}")

        do_HEAD = do_GET

        # -- endpoints -----------------------------------------------------------------------------
        def _create_repo(self, request: dict):
            if not self._authorized():
                return self._error(401, "Invalid credentials in Authorization header")
            repo_id = f"{request.get('organization') or USER}/{request['name']}"
            url = f"{hub.endpoint}/{repo_id}"
            with hub.lock:
                if repo_id in hub.repos:
                    return self._error(409, "You already created this model repo")
                hub.repos[repo_id] = Repo(repo_id, bool(request.get("private")))
            self._send(200, {"url": url, "name": repo_id})

        def _validate_yaml(self, request: dict):
            """Card metadata must be a YAML mapping, as the Hub requires before it accepts a README."""
            import yaml

            content = request.get("content") or ""
            front = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
            try:
                metadata = yaml.safe_load(front.group(1)) if front else None
            except yaml.YAMLError as err:
                return self._send(400, {"errors": [{"message": f"invalid YAML: {err}"}]})
            if metadata is not None and not isinstance(metadata, dict):
                return self._send(400, {"errors": [{"message": "metadata must be a mapping"}]})
            self._send(200, {"errors": [], "warnings": []})

        def _preupload(self, repo_id: str, request: dict):
            if self._repo(repo_id, write=True) is None:
                return
            files = []
            for item in request["files"]:
                binary = b"\0" in base64.b64decode(item["sample"])
                lfs = item["path"].endswith(LFS_SUFFIXES) or binary or item["size"] > 10 * 2**20
                files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
            self._send(200, {"files": files})

        def _lfs_batch(self, repo_id: str, request: dict):
            if self._repo(repo_id, write=True) is None:
                return
            objects = []
            for item in request["objects"]:
                entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
                if item["oid"] not in hub.lfs_store:
                    href = f"{hub.endpoint}/lfs-upload/{item['oid']}?signature={_signature(hub.token, item['oid'])}"
                    entry["actions"] = {"upload": {"href": href}}
                objects.append(entry)
            self._send(200, {"transfer": "basic", "objects": objects})

        def _commit(self, repo_id: str, body: bytes):
            repo = self._repo(repo_id, write=True)
            if repo is None:
                return
            changes, lfs_paths = {}, set()
            for line in body.splitlines():
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "file":
                    changes[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "lfsFile":
                    if value["oid"] not in hub.lfs_store:
                        return self._error(400, f"LFS object {value['oid']} was never uploaded")
                    changes[value["path"]] = hub.lfs_store[value["oid"]]
                    lfs_paths.add(value["path"])
                elif item["key"] in ("deletedFile", "deletedFolder"):
                    changes[value["path"]] = None
            with hub.lock:
                for path, content in changes.items():
                    if content is None:
                        prefix = path.rstrip("/") + "/"
                        for existing in [p for p in repo.files if p == path or p.startswith(prefix)]:
                            repo.files.pop(existing)
                            repo.lfs_paths.discard(existing)
                    else:
                        repo.files[path] = content
                        repo.lfs_paths.discard(path)
                repo.lfs_paths |= lfs_paths
                repo.sha = hashlib.sha1((repo.sha + json.dumps(sorted(changes))).encode()).hexdigest()
                repo.commits.append(repo.sha)
            self._send(200, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{repo.sha}", "commitOid": repo.sha})

        def _model_info(self, repo_id: str):
            repo = self._repo(repo_id)
            if repo is None:
                return
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            siblings = [{"rfilename": path, "size": len(content)} for path, content in sorted(repo.files.items())]
            self._send(
                200,
                {
                    "_id": repo.sha[:24],
                    "id": repo_id,
                    "modelId": repo_id,
                    "author": repo_id.split("/")[0],
                    "sha": repo.sha,
                    "private": repo.private,
                    "disabled": False,
                    "gated": False,
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                    "createdAt": now,
                    "lastModified": now,
                    "siblings": siblings,
                },
            )

        def _tree(self, repo_id: str):
            repo = self._repo(repo_id)
            if repo is None:
                return
            entries = [
                {"type": "file", "path": path, "size": len(content), "oid": hashlib.sha1(content).hexdigest()}
                for path, content in sorted(repo.files.items())
            ]
            self._send(200, entries)

        def _resolve(self, repo_id: str, path: str):
            repo = self._repo(repo_id)
            if repo is None:
                return
            content = repo.files.get(path)
            if content is None:
                return self._error(404, f"Entry not found: {path}", "EntryNotFound")
            headers = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
            if path in repo.lfs_paths:
                digest = hashlib.sha256(content).hexdigest()
                headers.update(
                    {"ETag": f'"{digest}"', "X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(len(content))}
                )
            else:
                headers["ETag"] = f'"{hashlib.sha1(content).hexdigest()}"'
            self._send(200, headers=headers, body=content)

    return Handler
