"""The explorer's server over HTTP: its routes, what it refuses, and the command line around it."""

import http.client
import json
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.explore import Explorer, ExploreServer
from rnnkit.explore.bundle import MAX_CHARS
from rnnkit.explore.server import asset
from rnnkit.train import load_model

TEXT = 'def f(x):\n    return "a (b)"\n'


@pytest.fixture(scope="module")
def explorer(tiny_run):
    model, vocab, _ = load_model(tiny_run)
    return Explorer(model, vocab, "tiny")


@pytest.fixture(scope="module")
def server(explorer):
    srv = ExploreServer(explorer, explorer.bundle(TEXT))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def call(srv, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def post_text(srv, text):
    status, _, body = call(srv, "POST", "/api/trace", json.dumps({"text": text}).encode(),
                           {"Content-Type": "application/json"})
    return status, json.loads(body)


def test_routes(server, explorer):
    assert server.server_address[0] == "127.0.0.1"
    status, headers, body = call(server, "GET", "/")
    assert status == 200 and b'<script src="/assets/explore.js"></script>' in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    for name in ("explore.js", "explore.css"):
        status, _, body = call(server, "GET", f"/assets/{name}")
        assert status == 200 and body.decode() == asset(name)
    status, _, body = call(server, "GET", "/api/trace")
    assert status == 200 and json.loads(body) == json.loads(json.dumps(explorer.bundle(TEXT)))
    status, got = post_text(server, "return x\n")
    assert status == 200 and got == json.loads(json.dumps(explorer.bundle("return x\n")))


@pytest.mark.parametrize("path", [
    "/../pyproject.toml", "/assets/../../../pyproject.toml", "/assets/%2e%2e/%2e%2e/server.py",
    "/%2e%2e%2f%2e%2e%2fpyproject.toml", "/assets/..%2fserver.py", "//etc/passwd", "/etc/passwd",
    "/assets/index.html", "/assets/explore.js/../../server.py", "/assets//etc/passwd",
    "/assets/explore.js%00.txt", "/__init__.py", "/api/trace/../../server.py",
])
def test_traversal_is_refused(server, path):
    status, _, body = call(server, "GET", path)
    assert status == 404
    assert b"import" not in body and b"root:" not in body and b"[build-system]" not in body


def test_raw_request_paths_are_refused(server):
    for line in (b"GET ../../etc/passwd HTTP/1.0", b"GET /..\\..\\pyproject.toml HTTP/1.0",
                 b"GET http://127.0.0.1/../pyproject.toml HTTP/1.0"):
        with socket.create_connection(server.server_address, timeout=30) as s:
            s.sendall(line + b"\r\nHost: 127.0.0.1\r\n\r\n")
            reply = b"".join(iter(lambda: s.recv(65536), b""))
        assert reply.split(b" ")[1] in (b"404", b"400"), reply[:80]


def test_bad_texts_get_a_message(server):
    status, got = post_text(server, "caf\u00e9 \u20ac")
    assert status == 400 and "outside the model's vocabulary" in got["error"]
    assert "'é'" in got["error"] and "'€'" in got["error"]
    status, got = post_text(server, "")
    assert status == 400 and "empty" in got["error"]
    status, got = post_text(server, "a" * (MAX_CHARS + 1))
    assert status == 400 and f"at most {MAX_CHARS:,}" in got["error"]
    status, _, body = call(server, "POST", "/api/trace", b"{not json",
                           {"Content-Type": "application/json"})
    assert status == 400 and "JSON" in json.loads(body)["error"]


def test_ten_megabytes_are_refused_without_tracing(server):
    body = json.dumps({"text": "a" * (10 << 20)}).encode()
    status, _, reply = call(server, "POST", "/api/trace", body, {"Content-Type": "application/json"})
    assert status == 413
    assert f"at most {MAX_CHARS:,} characters" in json.loads(reply)["error"]
    assert call(server, "GET", "/api/trace")[0] == 200  # still serving


def test_foreign_host_header_is_refused(server):
    status, _, body = call(server, "GET", "/api/trace", headers={"Host": "evil.example:8765"})
    assert status == 403 and b"127.0.0.1" in body
    assert call(server, "GET", "/", headers={"Host": "localhost:1"})[0] == 200


# ---- the command line ---------------------------------------------------------------------------

def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnkit explore: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_errors_are_one_line(tmp_path, tiny_run, capsys):
    assert "config.json" in one_line_error(capsys, ["explore", str(tmp_path)])
    one_line_error(capsys, ["explore", str(tmp_path / "missing")])
    assert "no such file" in one_line_error(capsys, ["explore", tiny_run, "--text", "nope.txt"])
    big = tmp_path / "big.txt"
    big.write_text("a" * (10 << 20))
    err = one_line_error(capsys, ["explore", str(tmp_path), "--text", str(big)])
    assert "10,485,760 characters" in err  # the text is refused before the folder is read
    assert "vocabulary" in one_line_error(capsys, ["explore", tiny_run, "--prompt", "\u20ac"])
    assert "--port must lie in [0, 65535], got 70000" in one_line_error(capsys, ["explore", tiny_run, "--port", "70000"])


def test_cli_html_file_holds_the_trace(tmp_path, tiny_run, explorer, capsys):
    out = tmp_path / "page.html"
    assert main(["explore", tiny_run, "--prompt", TEXT, "--html", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    start = page.index('<script id="bundle" type="application/json">') + 44
    data = json.loads(page[start:page.index("</script>", start)])
    assert data == {**json.loads(json.dumps(explorer.bundle(TEXT))), "title": "run"}
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert 'src="http' not in page and 'href="http' not in page and "/assets/" not in page


def test_cli_default_text_offline(tmp_path, tiny_run, corpus_text, capsys):
    out = tmp_path / "page.html"
    assert main(["explore", tiny_run, "--html", str(out)]) == 0
    assert "(validation)" in capsys.readouterr().out
    # a run whose corpus is gone: the model's own sample, never a download
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in ("config.json", "vocab.json", "model.safetensors"):
        (moved / f).write_bytes((Path(tiny_run) / f).read_bytes())
    cfg = json.loads((moved / "config.json").read_text())
    cfg["config"]["data"] = str(tmp_path / "gone.txt")
    (moved / "config.json").write_text(json.dumps(cfg))
    assert main(["explore", str(moved), "--html", str(out)]) == 0
    assert "a sample of the model" in capsys.readouterr().out


def test_cli_serves_and_warns_off_loopback(tiny_run, capsys, monkeypatch):
    def stop(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(ExploreServer, "serve_forever", stop)
    assert main(["explore", tiny_run, "--prompt", "def", "--port", "0"]) == 0
    cap = capsys.readouterr()
    assert "serving http://127.0.0.1:" in cap.out and "warning" not in cap.err
    assert main(["explore", tiny_run, "--prompt", "def", "--port", "0", "--host", "0.0.0.0"]) == 0
    cap = capsys.readouterr()
    assert "warning: --host 0.0.0.0 makes the explorer reachable from other machines" in cap.err


def test_a_client_that_hangs_up_costs_no_traceback(server, capfd):
    """A connection reset mid-request (a browser reload) prints nothing; another failure in a
    handler prints one line, not a traceback."""
    for request in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                    b"POST /api/trace HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 9999\r\n\r\n{"):
        s = socket.create_connection(("127.0.0.1", server.server_address[1]))
        s.sendall(request)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        s.close()
    time.sleep(0.5)  # the handler threads meet the reset
    try:
        raise ValueError("boom")
    except ValueError:
        server.handle_error(None, ("127.0.0.1", 1))
    err = capfd.readouterr().err
    assert err == "rnnkit explore: error answering 127.0.0.1: ValueError: boom\n", err
