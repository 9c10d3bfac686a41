"""The explorer's web page: a local server (standard library) or one self-contained HTML file.

Routes, and nothing else (any other path, ``/../``, ``%2e%2e``, ``//etc/passwd``: 404, since a
request path is looked up as an exact key, never joined to a folder):

    GET  /                   the page
    GET  /assets/<name>      its script and style sheet, from the package (ASSETS)
    GET  /api/trace          the trace of the text given on the command line (bundle JSON)
    POST /api/trace          {"text": "..."} -> the trace of that text, or {"error": "..."}

The server binds to 127.0.0.1 by default; while it does, it also refuses a request whose Host
header names another machine (a web page cannot then reach it by DNS rebinding). The page loads
nothing from the network: its script, styles and charts (plain SVG) ship in ``assets/``.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from rnnkit.explore.bundle import MAX_CHARS, check_text, make_bundle
from rnnkit.viz.trace import trace

ASSETS = {"/assets/explore.js": ("explore.js", "text/javascript; charset=utf-8"),
          "/assets/explore.css": ("explore.css", "text/css; charset=utf-8")}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# the largest POST body read: a maximal text in JSON with every character escaped (\uXXXX),
# plus room for the braces; a larger body gets its error without being traced
MAX_BODY = MAX_CHARS * 12 + 1024
DRAIN_LIMIT = 64 << 20  # a too-large body up to this size is read and dropped, so the
# browser sees the error reply rather than a reset connection
CSP_SERVED = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
              "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
CSP_FILE = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "img-src data:; base-uri 'none'; form-action 'none'")


def asset(name: str) -> str:
    return resources.files("rnnkit.explore").joinpath("assets", name).read_text(encoding="utf-8")


class Explorer:
    """A loaded model and its vocabulary: ``bundle(text)`` traces a text for the page."""

    def __init__(self, model, vocab, title: str = ""):
        self.model, self.vocab, self.title = model, vocab, title
        self._lock = threading.Lock()  # one trace at a time: they share the model

    def bundle(self, text: str) -> dict:
        check_text(text, self.vocab)
        with self._lock:
            return make_bundle(trace(self.model, text, self.vocab), self.title)


def _json(data) -> str:
    # "<" escaped, so no text can close the <script> element that holds the data in a file
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render_page(bundle: dict | None = None) -> str:
    """The page. With a bundle: one self-contained file (script, styles and data inline);
    without: the served page, which loads /assets/* and fetches /api/trace."""
    page = asset("index.html")
    if bundle is None:
        parts = {"csp": "", "style": '<link rel="stylesheet" href="/assets/explore.css">',
                 "data": '<script id="config" type="application/json">{"live":true}</script>',
                 "script": '<script src="/assets/explore.js"></script>'}
    else:
        parts = {"csp": f'<meta http-equiv="Content-Security-Policy" content="{CSP_FILE}">',
                 "style": f"<style>\n{asset('explore.css')}</style>",
                 "data": ('<script id="config" type="application/json">{"live":false}</script>\n'
                          f'<script id="bundle" type="application/json">{_json(bundle)}</script>'),
                 "script": f"<script>\n{asset('explore.js')}</script>"}
    for key, value in parts.items():
        page = page.replace(f"<!--{key}-->", value)
    return page


def write_html(path: str | Path, bundle: dict) -> Path:
    """Write the self-contained page (atomically: a reader never sees half a file)."""
    from rnnkit.data.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, render_page(bundle))
    return path


class Handler(BaseHTTPRequestHandler):
    server: ExploreServer
    server_version = "rnnkit-explore"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass  # quiet: the command line shows the address and errors, not every request

    def _send(self, status: int, body: bytes, ctype: str, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP_SERVED)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, data, close: bool = False) -> None:
        self._send(status, json.dumps(data, separators=(",", ":")).encode(),
                   "application/json; charset=utf-8", close)

    def _error(self, status: int, message: str, close: bool = False) -> None:
        self._send_json(status, {"error": message}, close)

    def _host_ok(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:host.find("]")]
        return name in LOOPBACK

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "this server answers only to 127.0.0.1")
        if path == "/":
            return self._send(200, render_page().encode(), "text/html; charset=utf-8")
        if path in ASSETS:
            name, ctype = ASSETS[path]
            return self._send(200, asset(name).encode(), ctype)
        if path == "/api/trace":
            return self._send(200, self.server.initial, "application/json; charset=utf-8")
        return self._error(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self):  # noqa: N802
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "this server answers only to 127.0.0.1")
        if urlsplit(self.path).path != "/api/trace":
            return self._error(HTTPStatus.NOT_FOUND, "not found")
        try:
            size = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._error(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length", True)
        if size > MAX_BODY:
            return self._too_large(size)
        try:
            text = json.loads(self.rfile.read(size).decode("utf-8"))["text"]
        except (ValueError, KeyError, TypeError):
            return self._error(HTTPStatus.BAD_REQUEST, 'expected a JSON body {"text": "..."}')
        try:
            bundle = self.server.explorer.bundle(text)
        except ValueError as err:  # check_text's message: what was expected, what was got
            return self._error(HTTPStatus.BAD_REQUEST, str(err))
        self._send(200, json.dumps(bundle, separators=(",", ":")).encode(),
                   "application/json; charset=utf-8")

    def _too_large(self, size: int) -> None:
        if size <= DRAIN_LIMIT:
            left = size
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
        self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"the text is {size:,} bytes; the explorer traces at most {MAX_CHARS:,} "
                    "characters at a time (cut it, or load a part)", close=True)


class ExploreServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, explorer: Explorer, initial: dict, host: str = "127.0.0.1", port: int = 0):
        self.explorer = explorer
        self.initial = json.dumps(initial, separators=(",", ":")).encode()
        self.loopback_only = host in LOOPBACK
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)

    def handle_error(self, request, client_address) -> None:
        """A browser that closes a connection mid-answer is routine (a reload, a new trace): not
        worth a traceback per request, which would also fill a terminal or a pipe nobody reads.
        Anything else is one line on stderr."""
        err = sys.exc_info()[1]
        if isinstance(err, ConnectionError):
            return
        print(f"rnnkit explore: error answering {client_address[0]}: {type(err).__name__}: {err}",
              file=sys.stderr, flush=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
