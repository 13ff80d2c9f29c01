"""Small helpers the integration suites share: required external tools, free loopback ports."""

from __future__ import annotations

import shutil
import socket


def require_tool(tool: str, package: str) -> str:
    """The path of `tool`, or a failure naming the Debian package that provides it."""
    path = shutil.which(tool)
    if path is None:
        raise AssertionError(f"`{tool}` not found: install the Debian package `{package}` "
                             "(scripts/deps.sh TEST_PACKAGES lists it)")
    return path


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
