"""A real HTTP server on 127.0.0.1 (ephemeral port) for download tests; loopback only, no outside network.

Usage::

    from http_server import LocalServer, file, status, sequence

    with LocalServer() as srv:
        srv.route("/good.bin", file(b"payload"))
        srv.route("/flaky.bin", sequence(status(503), file(b"payload")))
        fetch(srv.url("/good.bin"), dest)
        assert srv.hits["/flaky.bin"] == 2

A route is a callable ``(handler, query) -> None`` that writes the whole response with the
:class:`http.server.BaseHTTPRequestHandler` ``handler``; ``query`` is the parsed query string
(``{name: value}``, first value). The helpers below build the common ones: a file, a status, a body cut
short, a slow body, redirects, per-request sequences, a Google-Drive-style confirmation page and a
Yandex.Disk-style API answer. Responses are HTTP/1.0, so every request gets its own connection.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

Route = Callable[[BaseHTTPRequestHandler, dict[str, str]], None]


class LocalServer:
    """Serves registered routes on ``http://127.0.0.1:<port>``; ``hits`` counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []  # (path, query, headers)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                parsed = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                server.hits[parsed.path] += 1
                server.requests.append((parsed.path, query, dict(self.headers)))
                route = server.routes.get(parsed.path)
                if route is None:
                    status(404)(self, query)
                else:
                    route(self, query)

            def log_message(self, *args):  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, fn: Route) -> str:
        """Register ``fn`` at ``path``; returns the full URL."""
        self.routes[path] = fn
        return self.url(path)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def file(data: bytes, content_type: str = "application/octet-stream", headers: dict | None = None) -> Route:
    def fn(h: BaseHTTPRequestHandler, q: dict) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    return fn


def status(code: int, body: bytes = b"", headers: dict | None = None) -> Route:
    def fn(h: BaseHTTPRequestHandler, q: dict) -> None:
        h.send_response(code)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    return fn


def cut(data: bytes, claimed: int) -> Route:
    """Announce ``claimed`` bytes, send ``data`` (shorter) and close the connection."""

    def fn(h: BaseHTTPRequestHandler, q: dict) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(claimed))
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()
        h.close_connection = True

    return fn


def slow(data: bytes, pieces: int, delay: float) -> Route:
    """Send ``data`` in ``pieces`` parts with ``delay`` seconds before each."""

    def fn(h: BaseHTTPRequestHandler, q: dict) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        step = -(-len(data) // pieces)
        try:
            for i in range(0, len(data), step):
                time.sleep(delay)
                h.wfile.write(data[i : i + step])
                h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    return fn


def redirect(location: str, code: int = 302) -> Route:
    return status(code, headers={"Location": location})


def sequence(*routes: Route) -> Route:
    """The k-th request is answered by ``routes[k]``; the last one answers every later request."""
    lock = threading.Lock()
    count = [0]

    def fn(h: BaseHTTPRequestHandler, q: dict) -> None:
        with lock:
            k = min(count[0], len(routes) - 1)
            count[0] += 1
        routes[k](h, q)

    return fn


def drive_confirm(data: bytes, action: str, file_id: str, style: str = "form") -> Route:
    """Google Drive's large-file flow at ``/uc``: the first answer is the "download anyway" HTML page.

    ``style="form"`` (current Drive): a form whose ``action`` and hidden inputs (id, export, confirm,
    uuid) lead to the file; serve the file at ``action`` with :func:`drive_file`. ``style="cookie"`` (older
    Drive): a ``download_warning_<id>`` cookie holds the token; a request to ``/uc`` with ``confirm=<token>``
    gets the file.
    """
    token = "tok-7Hx"
    page = (
        "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
        "<p>Google Drive can't scan this file for viruses.</p>"
    )
    if style == "form":
        page += (
            f'<form id="download-form" action="{action}" method="get">'
            '<input type="submit" id="uc-download-link" value="Download anyway"/>'
            f'<input type="hidden" name="id" value="{file_id}">'
            '<input type="hidden" name="export" value="download">'
            '<input type="hidden" name="confirm" value="t">'
            '<input type="hidden" name="uuid" value="u-1"></form>'
        )
    page += "</body></html>"
    body = page.encode()

    def fn(h: BaseHTTPRequestHandler, q: dict) -> None:
        if style == "cookie" and q.get("confirm") == token and q.get("id") == file_id:
            return file(data)(h, q)
        h.send_response(200)
        h.send_header("Content-Type", "text/html; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        if style == "cookie":
            h.send_header("Set-Cookie", f"download_warning_13058_{file_id}={token}; Path=/")
        h.end_headers()
        h.wfile.write(body)

    return fn


def drive_file(data: bytes, file_id: str) -> Route:
    """The form target of :func:`drive_confirm`: the file when id/confirm/uuid came along, else 403."""

    def fn(h: BaseHTTPRequestHandler, q: dict) -> None:
        ok = q.get("id") == file_id and q.get("confirm") == "t" and q.get("uuid") == "u-1"
        (file(data) if ok else status(403))(h, q)

    return fn


def yandex_api(href: str, public_key: str) -> Route:
    """Yandex.Disk's ``/v1/disk/public/resources/download``: JSON ``{"href": ...}`` for ``public_key``."""

    def fn(h: BaseHTTPRequestHandler, q: dict) -> None:
        if q.get("public_key") != public_key:
            body = json.dumps({"error": "DiskNotFoundError", "description": "Resource not found."}).encode()
            return status(404, body)(h, q)
        body = json.dumps({"href": href, "method": "GET", "templated": False}).encode()
        file(body, content_type="application/json")(h, q)

    return fn
