"""A throw-away test PKI made with the openssl command-line tool.

One CA and one server certificate signed by it, both EC P-256 (key generation is a few
milliseconds, unlike RSA), valid for two days. The server certificate carries every name
asked for as a subjectAltName (DNS or IP), because TLS clients match names against the SAN
only (RFC 6125 section 6.4.4), never against the CN.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import subprocess
from typing import Iterable

DEFAULT_NAMES = ("acme.okta.com", "127.0.0.1", "localhost")

_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


@dataclasses.dataclass(frozen=True)
class Pki:
    """Paths of a test CA and of a server certificate/key it signed."""

    directory: str
    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    names: tuple


def _run(args: list, cwd: str) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stderr}")


def _san_entry(name: str) -> str:
    try:
        ipaddress.ip_address(name)
        return f"IP:{name}"
    except ValueError:
        return f"DNS:{name}"


def make_pki(tmpdir: str, names: Iterable[str] = DEFAULT_NAMES, prefix: str = "") -> Pki:
    """Create ca.crt/ca.key/server.crt/server.key (optionally prefixed) in tmpdir."""
    names = tuple(names)
    if not names:
        raise ValueError("make_pki needs at least one server name")
    os.makedirs(tmpdir, exist_ok=True)
    p = lambda base: os.path.join(tmpdir, prefix + base)  # noqa: E731
    ca_cert, ca_key = p("ca.crt"), p("ca.key")
    server_cert, server_key, csr, ext = p("server.crt"), p("server.key"), p("server.csr"), p(
        "server.ext")

    _run(["req", "-x509", *_CURVE, "-keyout", ca_key, "-out", ca_cert, "-days", "2",
          "-sha256", "-subj", "/O=okta-sidecar tests/CN=okta-sidecar test CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], tmpdir)
    _run(["req", "-new", *_CURVE, "-keyout", server_key, "-out", csr, "-sha256",
          "-subj", f"/CN={names[0]}"], tmpdir)
    with open(ext, "w", encoding="ascii") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid\n"
                f"subjectAltName={','.join(_san_entry(n) for n in names)}\n")
    _run(["x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
          "-out", server_cert, "-days", "2", "-sha256", "-extfile", ext], tmpdir)
    for path in (ca_key, server_key):
        os.chmod(path, 0o600)
    os.remove(csr)
    return Pki(directory=tmpdir, ca_cert=ca_cert, ca_key=ca_key, server_cert=server_cert,
               server_key=server_key, names=names)
