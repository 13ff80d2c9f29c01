"""A loopback TCP server that misbehaves below HTTP, for connect/TLS/timeout tests.

HTTP-level faults (hangs after the request, resets, 5xx bursts, trickled bodies...) live in
okta_sim.OktaSimulator.add_fault. This server covers what happens before any HTTP exchange:

  blackhole  - accept, then never read or write (TLS handshake timeout, response timeout)
  close      - accept, then close at once with FIN (peer closed before handshake)
  reset      - accept, then close at once with RST
  garbage    - accept, send bytes that are neither TLS nor HTTP, then close
  tls_hang   - complete the TLS handshake (needs cert/key), then never answer

`unused_port()` gives a loopback port with nothing listening (connection refused).
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from typing import Any, Optional

MODES = ("blackhole", "close", "reset", "garbage", "tls_hang")


def unused_port() -> int:
    """A port on 127.0.0.1 that refused connections a moment ago (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultServer:
    """Accepts on 127.0.0.1:port and misbehaves per `mode` (switchable at run time)."""

    def __init__(self, mode: str = "blackhole", cert_file: Optional[str] = None,
                 key_file: Optional[str] = None) -> None:
        self.mode = mode
        self._check(mode)
        self._ctx: Optional[ssl.SSLContext] = None
        if cert_file:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(cert_file, key_file)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._held: list = []
        self._threads: list = []
        self.accepted = 0
        self._acceptor = threading.Thread(target=self._accept_loop, name="fault-server",
                                          daemon=True)

    @staticmethod
    def _check(mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {MODES}")

    def set_mode(self, mode: str) -> None:
        self._check(mode)
        self.mode = mode

    def start(self) -> "FaultServer":
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        for t in list(self._threads):
            t.join(5)
        with self._lock:
            held, self._held = self._held, []
        for s in held:
            _close(s)
        self._listener.close()

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self.accepted += 1
            mode = self.mode
            if mode == "blackhole":
                with self._lock:
                    self._held.append(conn)
            elif mode == "close":
                _close(conn)
            elif mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif mode == "garbage":
                try:
                    conn.sendall(b"\x00\x01garbage, neither TLS nor HTTP\r\n\r\n")
                except OSError:
                    pass
                _close(conn)
            elif mode == "tls_hang":
                t = threading.Thread(target=self._tls_hang, args=(conn,), daemon=True)
                self._threads = [x for x in self._threads if x.is_alive()] + [t]
                t.start()

    def _tls_hang(self, conn: socket.socket) -> None:
        if self._ctx is None:
            _close(conn)
            return
        try:
            conn.settimeout(5)
            tls = self._ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            _close(conn)
            return
        with self._lock:
            if self._stop.is_set():
                _close(tls)
                return
            self._held.append(tls)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
