"""The misbehaving HTTP mirror on 127.0.0.1 and the helpers that the download tests and the
fault tests share (see tests/test_data_download.py for what each path of the server does)."""

from __future__ import annotations

import gzip
import http.server
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from bnn_cli.data.datasets import DATASETS

FILES = [f.name for f in DATASETS["mnist"].files]
REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"  # as in conftest.REAL_DATA_DIR
TIMEOUT = 0.5  # seconds: short, so the "silent server" cases stay fast


class MirrorServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping must not block the test's teardown
    files: dict[str, bytes]
    requests: list[str]
    delay: float = 0.2  # seconds before each /delay/ answer
    release: threading.Event

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{mode}/"

    def handle_error(self, request, client_address) -> None:
        pass  # the client hanging up on a slow body is expected here


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    server: MirrorServer

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.server.requests.append(self.path)
        mode, _, name = self.path.strip("/").partition("/")
        body = self.server.files.get(name)
        if mode == "missing" or body is None:
            self.send_error(404)
        elif mode == "good":
            self.send_body(body)
        elif mode == "delay":
            time.sleep(self.server.delay)
            self.send_body(body)
        elif mode == "html":
            self.send_body(b"<!DOCTYPE html><html><body>Moved</body></html>", "text/html")
        elif mode == "html-octet":
            self.send_body(b"\n<html><body>Error</body></html>")
        elif mode == "truncated":
            self.send_headers(len(body))
            self.wfile.write(body[: len(body) // 2])  # then the connection closes
        elif mode == "wrong":
            self.send_body(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))
        elif mode == "garbage":
            self.send_body(b"PK\x03\x04 not what was asked for")
        elif mode == "silent":
            self.server.release.wait(10)
        elif mode == "trickle":
            self.trickle(body)

    def send_headers(self, length: int, content_type: str = "application/octet-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def send_body(self, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.send_headers(len(body), content_type)
        self.wfile.write(body)

    def trickle(self, body: bytes) -> None:
        self.send_headers(len(body))
        for start in range(0, len(body), 256):
            if self.server.release.wait(0.05):
                return
            self.wfile.write(body[start : start + 256])
            self.wfile.flush()

    def log_message(self, *args) -> None:
        pass


def closed_port_url() -> str:
    """A URL on a port that nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def cli_env() -> dict[str, str]:
    """The real CLI in a subprocess may fall back on the built-in mirrors: a proxy on a closed
    port makes those fail at once, without touching the network; 127.0.0.1 bypasses it."""
    dead = closed_port_url().rstrip("/")
    return {
        **os.environ,
        "http_proxy": dead,
        "https_proxy": dead,
        "no_proxy": "127.0.0.1,localhost",
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def wait_for_partial(target: Path, process: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        partials = list(target.glob(f".{FILES[0]}.partial-*")) if target.is_dir() else []
        if partials and partials[0].stat().st_size > 0:
            return partials[0]
        time.sleep(0.05)
    raise AssertionError(f"no partial download appeared; CLI said {process.communicate()}")
