"""The cluster's Services as the Airflow worker sees them, for ``dag.test()`` on this machine: an HTTP proxy
that stands in for cluster DNS, kube-proxy and WordPress's own URL.

The kubernetes runtime checks a clone's site through its Service, ``http://<deployment>.<namespace>.svc:80``,
with the clone's Host header (``KubernetesRuntime.page_fetcher``). Nothing resolves ``*.svc`` here, and
the node agent serves the Deployment's pod at ``http://<deployment>.localhost:<site host port>/`` with that
local URL as ``WP_HOME`` (tests/kube/node_agent.py says why). With ``http_proxy`` pointing at this proxy,
urllib sends it such requests; it forwards each to the site host as the local site and writes the local
origin in the answer (body and ``Location``) back as the clone's (``X-Forwarded-Proto://<Host>``): what the
pod would answer with the clone's URL as its home behind an Ingress. Any other host is answered 502.
"""

from __future__ import annotations

import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from wpclone.local.settings import StackSettings

SERVICE_HOST_RE = re.compile(r"([a-z0-9][a-z0-9-]*)\.[a-z0-9-]+\.svc(\.cluster\.local)?")
HOP_HEADERS = {"host", "connection", "proxy-connection", "keep-alive", "accept-encoding", "content-length"}


class ServiceProxy:
    """``start()`` listens on 127.0.0.1 (``url``); ``stop()`` closes it."""

    def __init__(self, stack: StackSettings) -> None:
        self.stack = stack
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.requests: list[str] = []  # the Service URLs asked for, for the tests

    def start(self) -> ServiceProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.forward(self)

            do_HEAD = do_POST = do_GET

        return Handler

    def forward(self, request: BaseHTTPRequestHandler) -> None:
        target = urlsplit(request.path)
        found = SERVICE_HOST_RE.fullmatch(target.hostname or "")
        if not found:
            request.send_error(502, "not a Service of the cluster")
            return
        self.requests.append(request.path)
        site = found[1]
        local = self.stack.site_url(site)  # http://<site>.localhost:<port>
        public = f"{request.headers.get('X-Forwarded-Proto', 'http')}://{request.headers.get('Host', '')}"
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers["Host"] = urlsplit(local).netloc
        path = target.path + (f"?{target.query}" if target.query else "")
        connection = http.client.HTTPConnection("127.0.0.1", self.stack.http_port, timeout=60)
        try:
            connection.request(request.command, path or "/", body=body, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
        except OSError as exc:
            request.send_error(502, f"the site host did not answer: {exc}")
            return
        finally:
            connection.close()
        content = content.replace(local.encode(), public.encode()).replace(
            local.replace("/", "\\/").encode(), public.replace("/", "\\/").encode()
        )
        request.send_response(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() in HOP_HEADERS | {"transfer-encoding"}:
                continue
            request.send_header(key, value.replace(local, public) if key.lower() == "location" else value)
        request.send_header("Content-Length", str(len(content)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(content)
