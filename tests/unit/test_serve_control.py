"""The control channel between a probe and mbtest serve, without root: a message changed
in any byte, replayed or reordered is refused; the secret never comes from the command line
and must be long enough; requests are bounded; what the server keeps is bounded; a record
that cannot be read is counted, never fatal."""

import json
import socket
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbtest.endpoints import control, serve
from mbtest.errors import MbtestError
from mbtest.probe import engine, serverside, wire

SECRET = b"0123456789abcdef0123456789abcdef"


def test_a_sealed_message_opens_and_any_changed_byte_is_refused():
    body = {"session": "ab", "seq": 1, "op": "fetch", "nonce": "00" * 16}
    line = control.seal(SECRET, body).strip()
    assert control.open_sealed(SECRET, line) == {**body, "dir": "request"}
    for i in range(len(line)):
        changed = bytearray(line)
        changed[i] ^= 0x01
        with pytest.raises(control.Tampered):
            control.open_sealed(SECRET, bytes(changed))
    with pytest.raises(control.Tampered):
        control.open_sealed(b"another secret of enough length", line)
    with pytest.raises(control.Tampered, match="not a answer"):  # a request echoed back
        control.open_sealed(SECRET, line, "answer")


def test_nothing_unauthenticated_reaches_the_json_parser():
    deep = b"[" * 100000
    with pytest.raises(control.Tampered, match="integrity"):
        control.open_sealed(SECRET, b"0" * 64 + b" " + deep)
    mac = control._mac(SECRET, deep)  # authenticated but absurd: still one sentence
    with pytest.raises(control.Tampered, match="RecursionError"):
        control.open_sealed(SECRET, mac.encode() + b" " + deep)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_refused_with_the_projects_own_error(data):
    with pytest.raises(control.Tampered):
        control.open_sealed(SECRET, data)


def test_the_secret_comes_from_a_file_or_the_environment_and_is_long_enough(tmp_path, monkeypatch):
    short = tmp_path / "short"
    short.write_text("too short\n")
    with pytest.raises(MbtestError, match="at least 16 bytes"):
        control.read_secret(str(short))
    with pytest.raises(MbtestError, match="cannot read the secret file"):
        control.read_secret(str(tmp_path / "missing"))
    monkeypatch.setenv(control.SECRET_ENV, SECRET.decode())
    assert control.read_secret(None) == SECRET
    monkeypatch.delenv(control.SECRET_ENV)
    with pytest.raises(MbtestError, match=control.SECRET_ENV):
        control.read_secret(None)


class _Recorder(serve.Recorder):
    """The recorder without its packet socket (which needs root)."""

    def __init__(self, port: int):
        self.port, self.watches, self.malformed, self.kernel_dropped = port, {}, 0, 0
        self.sock = _PacketSocket([])


def test_requests_are_checked_and_bounded():
    recorder = _Recorder(8080)
    client = serve.ControlClient(None, 0.0, 0.0)

    def ask(**body):
        request = {"session": "s", "seq": 1, "server_nonce": client.nonce, **body}
        return serve.handle(recorder, client, request)

    hello = ask(op="hello")
    assert hello["port"] == 8080 and hello["server_nonce"] == client.nonce
    other = serve.handle(recorder, client, {"op": "fetch", "nonce": "ab" * 8, "server_nonce": "x"})
    assert "repeats this connection's nonce" in other["error"]  # (a replay from elsewhere)
    assert "unknown request" in ask(op="delete")["error"]
    assert "no watch" in ask(op="send", nonce="ab" * 8, packet_hex="00")["error"]
    assert "nonce" in ask(op="watch", nonce="not hex")["error"]
    assert "at most" in ask(op="watch", nonce="ab" * 8, seconds=3600)["error"]
    assert "could not convert" in ask(op="watch", nonce="ab" * 8, seconds="soon")["error"]
    assert ask(op="watch", nonce="ab" * 8, seconds=[1]).get("error")
    assert ask(op="watch", nonce="ab" * 8, seconds=5)["watching"] == "ab" * 8
    assert "used once" in ask(op="watch", nonce="ab" * 8, seconds=5)["error"]
    assert "no watch" in ask(op="fetch", nonce="cd" * 8)["error"]
    for i in range(serve.MAX_WATCHES - 1):
        ask(op="watch", nonce=f"{i:032x}", seconds=1)
    assert "already" in ask(op="watch", nonce="ef" * 8, seconds=1)["error"]
    assert "not an IP packet" in ask(op="send", nonce="ab" * 8, packet_hex="zz")["error"]
    toward = wire.packet(wire.Segment("10.0.0.2", "10.0.0.1", 8080, 40000, 9, flags="A"), 64, 1, 0)
    refused = ask(op="send", nonce="ab" * 8, packet_hex=toward.hex())["error"]
    assert "only along a flow the watch saw" in refused  # (nothing came from 10.0.0.1 yet)
    reset = wire.packet(wire.Segment("10.0.0.2", "10.0.0.1", 8080, 40000, 9, flags="R"), 64, 1, 0)
    assert "no SYN, RST or FIN" in ask(op="send", nonce="ab" * 8, packet_hex=reset.hex())["error"]
    short = wire.packet(wire.Segment("10.0.0.2", "10.0.0.1", 8080, 40000, 9, flags="A"), 64, 1, 0)
    cut = short[:24]  # an IPv4 header and four bytes of TCP
    assert ask(op="send", nonce="ab" * 8, packet_hex=cut.hex()).get("error")
    big = wire.Segment("10.0.0.2", "10.0.0.1", 8080, 40000, 9, flags="A", payload=bytes(2000))
    refused = ask(op="send", nonce="ab" * 8, packet_hex=wire.packet(big, 64, 1, 0).hex())
    assert "at most 1500 bytes" in refused["error"]


class _PacketSocket:
    """Packets as a packet socket gives them (outgoing marked as such), then nothing more."""

    def __init__(self, packets):
        self.packets = list(packets)

    def recvfrom(self, size):
        if not self.packets:
            raise BlockingIOError
        data, outgoing = self.packets.pop(0)
        return data, ("eth0", 0x0800, serve.PACKET_OUTGOING if outgoing else 0, 1, b"")

    def getsockopt(self, level, name, size):
        return (0).to_bytes(4, "little") + (3).to_bytes(4, "little")  # 3 dropped by the kernel


def test_a_watch_keeps_its_port_only_at_most_its_bound_and_counts_the_unreadable():
    recorder = _Recorder(8080)
    recorder.watch("ab" * 8, 5)
    ours = wire.packet(wire.Segment("10.0.0.1", "10.0.0.2", 40000, 8080, 1), 64, 1, 0)
    back = wire.packet(wire.Segment("10.0.0.2", "10.0.0.1", 8080, 40000, 9, flags="SA"), 64, 1, 0)
    other = wire.packet(wire.Segment("10.0.0.1", "10.0.0.2", 40000, 22, 1), 64, 1, 0)
    packets = [(ours, False), (back, True), (other, False), (b"\x45\x00", False)]
    packets += [(ours, False)] * (serve.MAX_RECORDS + 10)
    recorder.sock = _PacketSocket(packets)
    recorder.read()
    fetched = recorder.fetch("ab" * 8)
    assert len(fetched["records"]) == serve.MAX_RECORDS and fetched["dropped"] == 12
    assert recorder.malformed == 1 and fetched["kernel_dropped"] == 3
    first = [r["direction"] for r in fetched["records"][:3]]
    assert first == ["in", "out", "in"]  # the first ones kept: the probe's own
    recorder.watch("cd" * 8, 5)
    recorder.sock = _PacketSocket([(back, True), (other, False)])
    recorder.read()
    (kept,) = recorder.fetch("cd" * 8)["records"]
    assert kept["direction"] == "out" and bytes.fromhex(kept["packet_hex"]) == back


def _client_on(sock: socket.socket) -> control.Client:
    client = control.Client.__new__(control.Client)
    client.secret, client.timeout, client.session, client.seq = SECRET, 2.0, "mine", 0
    client.sock, client.reader = sock, control.LineReader(sock)
    client.server_nonce, client.failed = None, None
    return client


def test_a_replayed_echoed_or_late_answer_is_refused_and_the_channel_stays_failed():
    left, right = socket.socketpair()
    client = _client_on(left)

    def answer(line):
        threading.Thread(target=lambda: (right.recv(65536), right.sendall(line))).start()

    answer(control.seal(SECRET, {"session": "other", "seq": 1}, "answer"))
    with pytest.raises(control.Tampered, match="another request"):
        client.ask("hello")
    with pytest.raises(control.Tampered, match="failed earlier"):  # never the next answer
        client.ask("hello")
    left.close(), right.close()
    left, right = socket.socketpair()
    client = _client_on(left)

    def echo():
        right.sendall(right.recv(65536))  # the path sends the request back

    threading.Thread(target=echo).start()
    with pytest.raises(control.Tampered, match="not a answer"):
        client.ask("hello")
    left.close(), right.close()
    left, right = socket.socketpair()
    client = _client_on(left)
    answer(control.REFUSED)
    with pytest.raises(control.Tampered, match="integrity check"):
        client.ask("hello")
    left.close(), right.close()
    left, right = socket.socketpair()
    client = _client_on(left)
    answer(control.seal(SECRET, {"session": "mine", "seq": 1, "port": 8080}, "answer"))
    with pytest.raises(control.Tampered, match="no nonce"):
        client.ask("hello")
    left.close(), right.close()


def test_a_record_that_cannot_be_read_is_counted_not_fatal():
    segment = wire.Segment("10.0.0.1", "10.0.0.2", 40000, 80, 1000)
    sweep = engine.Sweep(segment, 5)
    fetched = {"records": [{"direction": "in", "packet_hex": "zz"}, {"direction": "in"}]}
    view = serverside.server_view(sweep, serverside.Served.read(sweep, fetched), [])
    assert view == {
        "arrived": False,
        "records": 2,
        "malformed_records": 2,
        "text": "none of this probe's packets reached the server",
    }
    sent = sweep.packet(3)  # the TTL-3 packet arrives unchanged
    fetched = {"records": [{"direction": "in", "packet_hex": sent.hex()}]}
    view = serverside.server_view(sweep, serverside.Served.read(sweep, fetched), [])
    assert view["arrived"] and view["ttl"] == 3 and view["forward"] == []
    assert json.dumps(view)


def test_server_parts_validate_render_and_count_as_findings(tmp_path):
    from pathlib import Path

    from mbtest.probe.result import probe_status
    from mbtest.report.render import render
    from tests.schemas import validate

    doc = json.loads((Path(__file__).parent.parent / "data" / "probe-server.json").read_text())
    validate(doc, "probe")
    assert probe_status(doc) == 1  # the server saw MP_CAPABLE stripped on the way back
    source = tmp_path / "probe.json"
    source.write_text(json.dumps(doc))
    html = Path(render([str(source)], str(tmp_path / "report.html"))).read_text()
    assert "on the way back</td><td>MP_CAPABLE removed: replaced by 12 NOPs" in html
    tampered = {"error": "mbtest serve refused a request <b>", "tampered": True}
    for probe in doc["probes"]:
        probe["server"] = tampered
    validate(doc, "probe")
    assert probe_status(doc) == 1
    source.write_text(json.dumps(doc))
    html = Path(render([str(source)], str(tmp_path / "report.html"))).read_text()
    assert "(no record reported)" in html and "request &lt;b&gt;" in html
    for probe in doc["probes"]:
        probe["server"] = {"arrived": True, "ttl": 10, "records": 3, "forward": [],
                           "back": {"server_sent": "SA", "changes": []}}  # fmt: skip
    assert probe_status(doc) == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=20))
def test_any_packet_the_recorder_reads_is_kept_skipped_or_counted_never_fatal(packets):
    recorder = _Recorder(8080)
    recorder.watch("ab" * 8, 5)
    recorder.sock = _PacketSocket([(p, False) for p in packets])
    recorder.read()  # never raises
    assert recorder.malformed + len(recorder.fetch("ab" * 8)["records"]) <= len(packets)
    segment = wire.Segment("10.0.0.1", "10.0.0.2", 40000, 8080, 1)
    fetched = {"records": [{"direction": "in", "packet_hex": p.hex()} for p in packets]}
    sweep = engine.Sweep(segment, 5)
    serverside.server_view(sweep, serverside.Served.read(sweep, fetched), [])  # never raises
