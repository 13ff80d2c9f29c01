"""A hostile-but-legal (and some plainly broken) HTTP/1.1 upstream, for framing tests.

Every response names the request it answers: the final response's body is the request's
`X-Marker` header (and so is its `X-Marker` response header), so a test can tell at once when a
client receives another client's response. The behaviour is chosen per request by the path
`/hostile/<mode>/...`:

  plain           - a normal 200 with Content-Length (the control case)
  interim103      - `103 Early Hints` (with a Link field), then the final 200
  interims        - 100, 102 and two 103s, then the final 200
  continue100     - an unsolicited `100 Continue`, then the final 200
  stray           - the final 200, plus bytes after its Content-Length body in the same write
                    (a whole second response, as a desynchronised server would send)
  stray_late      - the final 200, then 50 ms later a stray response on the idle connection
  close_delimited - 200 without Content-Length or chunked; the body ends with the close (with
                    TLS: a proper close_notify first)
  truncated       - TLS: like close_delimited but the TCP connection is closed without
                    close_notify; plain: a Content-Length larger than the body, then the close
  early           - the response goes out before the request body is read; the body is read
                    (and dropped) afterwards, and the connection is kept alive
  early_close     - 413 with `Connection: close` before the body is read, then the close
  head_length     - answers HEAD with a Content-Length and no body (GET gets the body)
  switch          - `101 Switching Protocols` (never asked for: the proxy strips Upgrade)
  interim_flood   - 50 interim responses and never a final one

`requests` lists (mode, marker, method, body_length) of every request read whole, `heads` the
target of every request head that arrived (whether or not its body could be read).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Optional

MAX_HEAD = 64 * 1024


class HostileUpstream:
    def __init__(self, cert_file: Optional[str] = None, key_file: Optional[str] = None) -> None:
        self._ctx: Optional[ssl.SSLContext] = None
        if cert_file:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(cert_file, key_file)
            self._ctx.set_alpn_protocols(["http/1.1"])
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.requests: list = []
        self.heads: list = []  # the target of every request head received, body read or not
        self.connections = 0
        self._threads: list = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="hostile-upstream",
                                          daemon=True)

    def start(self) -> "HostileUpstream":
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(2)
        self._listener.close()
        for t in list(self._threads):
            t.join(2)

    def __enter__(self) -> "HostileUpstream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def seen(self, mode: Optional[str] = None) -> list:
        with self._lock:
            return [r for r in self.requests if mode is None or r[0] == mode]

    # -- serving ---------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        conn = raw
        try:
            if self._ctx:
                conn = self._ctx.wrap_socket(raw, server_side=True)
            buf = b""
            while not self._stop.is_set():
                head, buf = _read_head(conn, buf)
                if head is None:
                    return
                method, target, headers = _parse_head(head)
                with self._lock:
                    self.heads.append(target)
                path = target.split("?", 1)[0]
                parts = path.split("/")
                mode = parts[2] if len(parts) > 2 and parts[1] == "hostile" else "plain"
                marker = headers.get("x-marker", "none")
                if mode in ("early", "early_close"):
                    keep = self._early(conn, mode, marker)
                    buf, body = _read_body(conn, buf, headers)
                    self._record(mode, marker, method, body)
                    if not keep:
                        return _hard_close(conn, raw)
                    continue
                buf, body = _read_body(conn, buf, headers)
                if body is None:
                    return
                self._record(mode, marker, method, body)
                if not self._respond(conn, raw, mode, marker, method):
                    return
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                raw.close()
            except OSError:
                pass

    def _record(self, mode: str, marker: str, method: str, body: Optional[bytes]) -> None:
        with self._lock:
            self.requests.append((mode, marker, method, len(body or b"")))

    def _early(self, conn: socket.socket, mode: str, marker: str) -> bool:
        if mode == "early":
            conn.sendall(_final(200, marker, b"early:" + marker.encode()))
            return True
        conn.sendall(_final(413, marker, b"too big:" + marker.encode(), close=True))
        return False

    def _respond(self, conn: socket.socket, raw: socket.socket, mode: str, marker: str,
                 method: str) -> bool:
        body = marker.encode()
        if mode == "interim103":
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            conn.sendall(_final(200, marker, body))
        elif mode == "interims":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
                         b"HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n")
            time.sleep(0.01)
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n"
                         + _final(200, marker, body))
        elif mode == "continue100":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + _final(200, marker, body))
        elif mode == "stray":
            conn.sendall(_final(200, marker, body) + _final(200, "stray", b"stray"))
        elif mode == "stray_late":
            conn.sendall(_final(200, marker, body))
            time.sleep(0.05)
            conn.sendall(_final(200, "stray", b"stray"))
        elif mode == "close_delimited":
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Marker: " + body + b"\r\n\r\n" + body)
            return _clean_close(conn)
        elif mode == "truncated":
            if self._ctx:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Marker: " + body + b"\r\n\r\n" + body)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Marker: " + body
                             + b"\r\nContent-Length: 1000\r\n\r\n" + body)
            time.sleep(0.02)
            return _hard_close(conn, raw)
        elif mode == "head_length":
            if method == "HEAD":
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Marker: " + body
                             + b"\r\nContent-Length: 1234\r\n\r\n")
            else:
                conn.sendall(_final(200, marker, body))
        elif mode == "switch":
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                         b"Upgrade: websocket\r\n\r\n" + _final(200, marker, body))
        elif mode == "split":
            # Pieces cut where a parser is easiest to fool: inside the head's last CRLF (after
            # "\r\n\r"), then inside the body.
            msg = _final(200, marker, body)
            cut = msg.index(b"\r\n\r\n") + 3
            for piece in (msg[:cut], msg[cut:cut + 4], msg[cut + 4:]):
                conn.sendall(piece)
                time.sleep(0.02)
        elif mode == "split_chunked":
            # A chunked body whose chunk header and chunk data arrive apart.
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Marker: " + body + b"\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}".encode())
            for piece in (b"\r\n" + body[:5], body[5:] + b"\r\n0\r", b"\n\r\n"):
                time.sleep(0.02)
                conn.sendall(piece)
        elif mode == "interim_flood":
            for _ in range(50):
                conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
            time.sleep(2)
            return False
        else:
            conn.sendall(_final(200, marker, body))
        return True


def _final(status: int, marker: str, body: bytes, close: bool = False) -> bytes:
    reason = {200: "OK", 413: "Payload Too Large"}.get(status, "X")
    head = (f"HTTP/1.1 {status} {reason}\r\nX-Marker: {marker}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n")
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def _read_head(conn: socket.socket, buf: bytes) -> tuple:
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise ValueError("head too large")
        data = conn.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def _parse_head(head: str) -> tuple:
    lines = head.split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _read_body(conn: socket.socket, buf: bytes, headers: dict) -> tuple:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            while b"\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return b"", None
                buf += data
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(buf) < size + 2:
                data = conn.recv(65536)
                if not data:
                    return b"", None
                buf += data
            if size == 0:
                # trailer fields, then the empty line
                while not buf.startswith(b"\r\n") and b"\r\n\r\n" not in buf:
                    buf += conn.recv(65536)
                buf = buf[2:] if buf.startswith(b"\r\n") else buf.split(b"\r\n\r\n", 1)[1]
                return buf, body
            body += buf[:size]
            buf = buf[size + 2:]
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        data = conn.recv(65536)
        if not data:
            return b"", None
        buf += data
    return buf[length:], buf[:length]


def _clean_close(conn: socket.socket) -> bool:
    if isinstance(conn, ssl.SSLSocket):
        try:
            conn.unwrap()  # close_notify
        except (OSError, ssl.SSLError):
            pass
    return False


def _hard_close(conn: socket.socket, raw: socket.socket) -> bool:
    # With TLS: no close_notify, just the TCP close (what a truncation attack looks like).
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    return False
