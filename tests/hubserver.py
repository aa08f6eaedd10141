"""A small Hugging Face Hub-compatible file server for tests, on 127.0.0.1 (no network, no real Hub).

Serves folders as repos: ``repos[(repo_id, revision)] = folder``. Each revision gets a fixed 40-hex commit id.
Routes: model info (``/api/models/{repo}[/revision/{rev}]``), tree listing, and ``HEAD``/``GET``
``/{repo}/resolve/{rev}/{path}`` with the headers huggingface_hub reads (X-Repo-Commit, ETag, X-Linked-Etag,
X-Linked-Size, Content-Length) and 404s with X-Error-Code. No Xet headers. Blob ids are git blob ids, as the Hub's.

Hostile knobs, for tests of what an untrusted endpoint can do: ``tamper_info(info)`` edits a model-info answer in
place, ``tamper_file(path, data, headers)`` returns the body to send for a file (editing its headers in place);
``redirect_file(path)`` returns a URL to send a file's request to (a 302) or None; ``rate`` sends every file body at
that many bytes per second, on each connection (a throttled CDN, or a trickle); ``requests`` logs every path asked
for and ``headers`` the request headers of each, in the same order.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


def git_blob_id(data: bytes) -> str:
    """What git (and the Hub's ``blobId``) names a file's bytes by."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Path] = {}
        self.tamper_info: Callable[[dict[str, object]], None] | None = None
        self.tamper_file: Callable[[str, bytes, dict[str, str]], bytes] | None = None
        self.redirect_file: Callable[[str], str | None] | None = None
        self.rate: float | None = None
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # a client that gives up mid-answer (a test of timeouts) is no error of the server's to print
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        # shutdown() waits for the loop's next poll: the default 0.5 s was most of each Hub test's teardown
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo: str, folder: Path, revision: str = "main") -> str:
        self.repos[(repo, revision)] = folder
        return self.commit(repo, revision)

    @staticmethod
    def commit(repo: str, revision: str) -> str:
        return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Idempotent: a test may take the endpoint away before the fixture's teardown."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()

    def _lookup(self, repo: str, rev: str) -> tuple[Path, str] | None:
        for (r, revision), folder in self.repos.items():
            if r == repo and (revision == rev or self.commit(r, revision) == rev):
                return folder, self.commit(r, revision)
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self,
                code: int,
                body: bytes = b"",
                headers: dict[str, str] | None = None,
                rate: float | None = None,
            ) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if rate is None:
                    self.wfile.write(body)
                    return
                # every 50 ms at most, what the rate allows since the body began
                self.wfile.flush()
                started, sent = time.monotonic(), 0
                while sent < len(body):
                    due = min(len(body), int((time.monotonic() - started) * rate))
                    if due > sent:
                        self.wfile.write(body[sent:due])
                        self.wfile.flush()
                        sent = due
                    time.sleep(min(0.05, 1 / rate))

            def _error(self, code: str, extra: dict[str, str] | None = None) -> None:
                self._send(404, json.dumps({"error": code}).encode(), {"X-Error-Code": code, **(extra or {})})

            def _files(self, folder: Path) -> list[dict[str, object]]:
                out = []
                for p in sorted(folder.rglob("*")):
                    if p.is_file():
                        data = p.read_bytes()
                        entry: dict[str, object] = {
                            "type": "file",
                            "path": p.relative_to(folder).as_posix(),
                            "size": len(data),
                            "oid": git_blob_id(data),
                        }
                        if p.suffix in (".safetensors", ".bin", ".gguf"):
                            entry["lfs"] = {
                                "oid": hashlib.sha256(data).hexdigest(),
                                "size": len(data),
                                "pointerSize": 134,
                            }
                        out.append(entry)
                return out

            def do_GET(self) -> None:  # noqa: N802
                self._route()

            def do_HEAD(self) -> None:  # noqa: N802
                self._route()

            def _route(self) -> None:
                path = urlparse(self.path).path
                hub.requests.append(path)
                hub.headers.append({k.lower(): v for k, v in self.headers.items()})
                parts = [unquote(p) for p in path.strip("/").split("/")]
                if parts[:2] == ["api", "models"]:
                    return self._api(parts[2:])
                if len(parts) >= 5 and parts[2] == "resolve":
                    return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
                self._error("EntryNotFound")

            def _api(self, rest: list[str]) -> None:
                repo = "/".join(rest[:2])
                if not any(r == repo for r, _ in hub.repos):
                    return self._error("RepoNotFound")
                tail = rest[2:]
                rev = tail[1] if len(tail) >= 2 and tail[0] in ("revision", "tree") else "main"
                found = hub._lookup(repo, rev)
                if found is None:
                    return self._error("RevisionNotFound")
                folder, commit = found
                files = self._files(folder)
                if tail and tail[0] == "tree":
                    return self._send(200, json.dumps(files).encode(), {"Content-Type": "application/json"})
                siblings = []
                for f in files:
                    sib: dict[str, object] = {"rfilename": f["path"], "size": f["size"], "blobId": f["oid"]}
                    lfs = f.get("lfs")
                    if isinstance(
                        lfs, dict
                    ):  # model info spells the LFS sha256 "sha256"; the tree says "oid"
                        sib["lfs"] = {
                            "sha256": lfs["oid"],
                            "size": lfs["size"],
                            "pointerSize": lfs["pointerSize"],
                        }
                    siblings.append(sib)
                info = {
                    "id": repo,
                    "modelId": repo,
                    "sha": commit,
                    "siblings": siblings,
                    "private": False,
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                }
                if hub.tamper_info is not None:
                    hub.tamper_info(info)
                self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})

            def _resolve(self, repo: str, rev: str, file: str) -> None:
                if not any(r == repo for r, _ in hub.repos):
                    return self._error("RepoNotFound")
                found = hub._lookup(repo, rev)
                if found is None:
                    return self._error("RevisionNotFound")
                folder, commit = found
                target = (folder / file).resolve()
                if folder.resolve() not in target.parents or not target.is_file():
                    return self._error("EntryNotFound", {"X-Repo-Commit": commit})
                elsewhere = hub.redirect_file(file) if hub.redirect_file is not None else None
                if elsewhere is not None:
                    return self._send(302, b"", {"Location": elsewhere, "X-Repo-Commit": commit})
                data = target.read_bytes()
                headers = {"X-Repo-Commit": commit, "Content-Type": "application/octet-stream"}
                if target.suffix in (".safetensors", ".bin", ".gguf"):
                    sha = hashlib.sha256(data).hexdigest()
                    headers.update(
                        {"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))}
                    )
                else:
                    headers["ETag"] = f'"{git_blob_id(data)}"'
                if hub.tamper_file is not None:
                    data = hub.tamper_file(file, data, headers)
                self._send(200, data, headers, hub.rate)

        return Handler
