"""The control channel between ``mbtest probe --server`` and ``mbtest serve``: JSON lines,
each authenticated and integrity-protected with HMAC-SHA256 under a shared secret.

The channel may cross the very middleboxes being measured, so a message that fails its
check is never used: the server closes the connection, the probe says the channel was
tampered with rather than report a record. Every message names the session (chosen by the
probe when it connects) and a sequence number that only grows: a message replayed from
another session, or out of order, fails like a forged one. Lines are bounded in size and
every read has a deadline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import time
from typing import Any

from mbtest.errors import MbtestError

MAX_LINE = 4 * 1024 * 1024  # a fetch answer holds at most a few thousand packet records
SECRET_ENV = "MBTEST_SERVE_SECRET"
MIN_SECRET = 16  # bytes
# the server's last words on a connection whose message failed its check (not sealed: the
# probe must learn why its channel closed even when the secret is what is wrong)
REFUSED = b'{"refused": "a request failed its integrity check"}\n'


class ControlError(MbtestError):
    """The control channel failed: unreachable, closed, too slow, or not answering."""


class Tampered(ControlError):
    """A message failed its integrity check: something on the path changed it."""


def read_secret(path: str | None) -> bytes:
    """The shared secret from a file (``--secret-file``) or the environment, never from
    the command line (where other users could read it); one sentence when missing."""
    if path:
        try:
            with open(path, "rb") as f:
                secret = f.read().strip()
        except OSError as e:
            raise MbtestError(f"cannot read the secret file {path}: {e.strerror}") from None
    else:
        secret = os.environ.get(SECRET_ENV, "").encode()
    if len(secret) < MIN_SECRET:
        where = path or f"${SECRET_ENV}"
        raise MbtestError(
            f"the shared secret ({where}) must hold at least {MIN_SECRET} bytes "
            "(give it with --secret-file or the environment)"
        )
    return secret


def _mac(secret: bytes, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(secret, canonical, hashlib.sha256).hexdigest()


def seal(secret: bytes, body: dict[str, Any]) -> bytes:
    """One message as it goes on the wire."""
    return json.dumps({"body": body, "mac": _mac(secret, body)}).encode() + b"\n"


def open_sealed(secret: bytes, line: bytes) -> dict[str, Any]:
    """The body of a received line, or Tampered when it is not exactly what was sealed."""
    try:
        message = json.loads(line)
        body, mac = message["body"], message["mac"]
        if not isinstance(body, dict) or not isinstance(mac, str):
            raise ValueError("not a sealed message")
    except (ValueError, KeyError, TypeError) as e:
        raise Tampered(f"a control message could not be read ({e})") from None
    if not hmac.compare_digest(_mac(secret, body), mac):
        raise Tampered("a control message failed its integrity check")
    return body


class LineReader:
    """Lines from a socket, bounded in size, each with a deadline."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def read_line(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ControlError(f"no answer on the control channel within {timeout:g} s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as e:
                raise ControlError(f"the control channel failed: {e.strerror or e}") from None
            if not chunk:
                raise ControlError("the control channel was closed by the other end")
            self.buffer += chunk
            if len(self.buffer) > MAX_LINE:
                raise ControlError(f"a control message is longer than {MAX_LINE} bytes")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


class Client:
    """The probe's end: one authenticated request and answer at a time."""

    def __init__(self, address: str, port: int, secret: bytes, timeout: float = 5.0):
        self.secret, self.timeout = secret, timeout
        self.session = os.urandom(8).hex()
        self.seq = 0
        try:
            self.sock = socket.create_connection((address, port), timeout=timeout)
        except OSError as e:
            why = e.strerror or type(e).__name__
            where = f"{address} port {port}"
            raise ControlError(f"cannot reach mbtest serve at {where}: {why}") from None
        self.reader = LineReader(self.sock)

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        body = {"session": self.session, "seq": self.seq, "op": op, **fields}
        try:
            self.sock.sendall(seal(self.secret, body))
        except OSError as e:
            raise ControlError(f"the control channel failed: {e.strerror or e}") from None
        try:
            line = self.reader.read_line(self.timeout)
        except ControlError as e:
            raise ControlError(f"{e} (after a {op} request)") from None
        if line == REFUSED.strip():
            raise Tampered(
                "mbtest serve refused a request that failed its integrity check: something "
                "on the path changes the control channel, or the two secrets differ"
            )
        answer = open_sealed(self.secret, line)
        if answer.get("session") != self.session or answer.get("seq") != self.seq:
            raise Tampered("a control answer belongs to another request (replayed or reordered)")
        if answer.get("error"):
            raise ControlError(f"mbtest serve refused the request: {answer['error']}")
        return answer

    def close(self) -> None:
        self.sock.close()
