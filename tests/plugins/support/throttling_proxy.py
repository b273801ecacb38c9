"""An HTTP proxy in front of moto that answers the next N requests with AWS throttling errors, or hangs."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class ThrottlingProxy:
    def __init__(self, upstream: str, throttle_next: int):
        self.upstream = upstream.rstrip("/")
        self.throttle_next = throttle_next
        self.throttled = 0
        self.forwarded = 0
        self.hanging = False  # accept requests and never answer until stop()
        # When set, only requests whose path contains one of these are throttled (REST protocols
        # such as Batch's name the operation in the path): a status cache's background reads
        # through the same proxy must not use up throttles meant for a create.
        self.throttle_paths: tuple[str, ...] = ()
        # Requests whose path contains one of these are throttled for as long as it is set, whatever
        # throttle_next says: a call AWS keeps refusing.
        self.refuse_paths: tuple[str, ...] = ()
        # Forward requests whose path contains one of these to AWS, then drop the connection
        # unanswered: the request took effect but the caller cannot know.
        self.lose_answers_to: tuple[str, ...] = ()
        self.lost = 0
        # Hold requests whose path contains one of these for delay_seconds, then forward them: AWS
        # carries the request out after the caller has stopped waiting.
        self.delay_paths: tuple[str, ...] = ()
        self.delay_seconds = 0.0
        self.received: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.received.append((self.command, self.path))
                if proxy.hanging:
                    proxy._released.wait()
                    return
                chosen = not proxy.throttle_paths or any(p in self.path for p in proxy.throttle_paths)
                refused = any(p in self.path for p in proxy.refuse_paths)
                with proxy._lock:
                    throttle = chosen and proxy.throttle_next > 0 and not refused
                    if throttle:
                        proxy.throttle_next -= 1
                    throttle = throttle or refused
                    if throttle:
                        proxy.throttled += 1
                if throttle:
                    data = b'{"__type":"TooManyRequestsException","message":"Rate exceeded"}'
                    self.send_response(429)
                    self.send_header("x-amzn-ErrorType", "TooManyRequestsException")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if any(p in self.path for p in proxy.delay_paths):
                    time.sleep(proxy.delay_seconds)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"host"}}
                resp = requests.request(
                    self.command, proxy.upstream + self.path, headers=headers, data=body, timeout=30
                )
                with proxy._lock:
                    proxy.forwarded += 1
                if any(p in self.path for p in proxy.lose_answers_to):
                    with proxy._lock:
                        proxy.lost += 1
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        return Handler

    def start(self) -> ThrottlingProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
