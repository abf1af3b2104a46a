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


def _mac(secret: bytes, payload: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def seal(secret: bytes, body: dict[str, Any], direction: str = "request") -> bytes:
    """One message as it goes on the wire: the MAC, a space, then the body's JSON. The MAC
    covers the body's exact bytes and its direction (a request echoed back by the path is
    not an answer)."""
    payload = json.dumps({**body, "dir": direction}, separators=(",", ":")).encode()
    return _mac(secret, payload).encode() + b" " + payload + b"\n"


def open_sealed(secret: bytes, line: bytes, direction: str = "request") -> dict[str, Any]:
    """The body of a received line, or Tampered when it is not exactly what was sealed for
    this direction. The MAC is checked before anything of the body is parsed: bytes from
    someone without the secret are never handed to the JSON parser."""
    mac, _, payload = bytes(line).partition(b" ")
    try:
        mac_text = mac.decode("ascii")
    except UnicodeDecodeError:
        raise Tampered("a control message could not be read (no MAC)") from None
    if not hmac.compare_digest(_mac(secret, payload), mac_text):
        raise Tampered("a control message failed its integrity check")
    try:  # (authenticated from here on; still bounded and refused with one sentence)
        body = json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise Tampered(f"a control message could not be read ({type(e).__name__})") from None
    if not isinstance(body, dict) or body.get("dir") != direction:
        raise Tampered(f"a control message is not a {direction} (echoed or replayed)")
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
    """The probe's end: one authenticated request and answer at a time. The first answer
    (to ``hello``) carries a nonce the server chose for this connection, which every later
    request repeats: a request replayed on another connection is refused. Once the channel
    failed in any way it stays failed (a late answer must never be taken for the next)."""

    def __init__(self, address: str, port: int, secret: bytes, timeout: float = 5.0):
        self.secret, self.timeout = secret, timeout
        self.session = os.urandom(8).hex()
        self.seq = 0
        self.server_nonce: str | None = None
        self.failed: ControlError | None = None
        try:
            self.sock = socket.create_connection((address, port), timeout=timeout)
        except OSError as e:
            why = e.strerror or type(e).__name__
            where = f"{address} port {port}"
            raise ControlError(f"cannot reach mbtest serve at {where}: {why}") from None
        self.reader = LineReader(self.sock)

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        if self.failed is not None:
            raise type(self.failed)(f"{self.failed} (the control channel failed earlier)")
        try:
            return self._ask(op, fields)
        except ControlError as e:
            self.failed = e
            raise

    def _ask(self, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        body = {"session": self.session, "seq": self.seq, "op": op, **fields}
        if self.server_nonce is not None:
            body["server_nonce"] = self.server_nonce
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
        answer = open_sealed(self.secret, line, "answer")
        if answer.get("session") != self.session or answer.get("seq") != self.seq:
            raise Tampered("a control answer belongs to another request (replayed or reordered)")
        if answer.get("error"):
            raise ControlError(f"mbtest serve refused the request: {str(answer['error'])[:200]}")
        if op == "hello":
            nonce = answer.get("server_nonce")
            if not isinstance(nonce, str) or len(nonce) != 32:
                raise Tampered("the server's hello carries no nonce for this connection")
            self.server_nonce = nonce
        expected = ANSWER_FIELDS.get(op, {})
        for name, kind in expected.items():
            if not isinstance(answer.get(name), kind) or isinstance(answer.get(name), bool):
                raise ControlError(f"mbtest serve's answer to {op} lacks {name}")
        return answer

    def close(self) -> None:
        self.sock.close()


# what each answer must hold (a well-sealed but malformed answer is one sentence too)
ANSWER_FIELDS: dict[str, dict[str, type]] = {
    "hello": {"port": int, "server_nonce": str},
    "watch": {"watching": str},
    "fetch": {"records": list, "dropped": int},
    "send": {"sent": int},
}
