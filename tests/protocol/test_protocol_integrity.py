"""Buffer integrity modes (docs/protocol.md §2.1), over real sockets where bytes travel.

``digest``: every buffer byte is under the HMAC. ``transport``: the buffers' count, order and lengths
are (and their descriptors, through the signed content), their bytes are not; allowed only with
CURVE or on loopback/IPC. Mismatched peers are an error, never a silent acceptance.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from protocol_fakes import KEY, FakeServer

from protocol import (
    DELIMITER,
    BufferIntegrityMismatch,
    ConnectionFileError,
    ConnectionInfo,
    ProtocolError,
    Session,
    SignatureError,
    read_connection_file,
    resolve_buffer_integrity,
    write_connection_file,
)
from protocol import messages as M
from protocol.client import Client
from protocol.curve import load_keypair, write_keypair
from protocol.integrity import DIGEST, TRANSPORT, is_loopback_address
from protocol.signing import Signer

FAST = {"heartbeat_interval_s": 0.1, "dead_after_s": 1.0, "reconnect_interval_s": 0.1,
        "request_timeout_s": 5.0}


def recv_frames(sock: zmq.Socket[Any], timeout_ms: int = 5000) -> list[zmq.Frame]:
    assert sock.poll(timeout_ms), "nothing arrived"
    return sock.recv_multipart(copy=False)


def two_arrays(session: Session) -> list[bytes]:
    """Frames of a message with two buffers of different lengths, as bytes to tamper with."""
    content = {"a": np.arange(16, dtype=np.float32), "b": np.arange(6, dtype=np.int64).reshape(2, 3)}
    return [bytes(f) for f in session.serialize(session.msg("submit", content))]


def relay(dealer: zmq.Socket[Any], router: zmq.Socket[Any], frames: list[bytes]) -> list[zmq.Frame]:
    """Send (possibly tampered) frames over real TCP and return what the receiver got."""
    dealer.send_multipart(frames)
    return recv_frames(router)


# --- transport mode ---------------------------------------------------------------------------------

def test_transport_64mib_round_trip_is_bit_exact_and_zero_copy(router_dealer) -> None:
    router, dealer = router_dealer
    client, server = Session(KEY, buffer_integrity=TRANSPORT), Session(KEY, buffer_integrity=TRANSPORT)
    array = np.random.default_rng(11).standard_normal(16 << 20, dtype=np.float32).reshape(4096, 4096)
    array[0, :4] = [np.nan, np.inf, -0.0, np.float32(1e-45)]
    client.send(dealer, "submit", {"kind": "x", "params": {"image": array}})
    message = server.deserialize(recv_frames(router, 20000))
    received = message.content["params"]["image"]
    assert received.shape == (4096, 4096) and received.dtype == np.float32
    assert received.tobytes() == array.tobytes()
    assert received.ctypes.data == np.frombuffer(message.buffers[0], dtype=np.uint8).ctypes.data


@pytest.mark.parametrize("index", [1, 2, 3, 4, 5],
                         ids=["signature", "header", "parent", "metadata", "content"])
def test_transport_tampered_envelope_is_rejected(router_dealer, index: int) -> None:
    router, dealer = router_dealer
    sender, receiver = Session(KEY, buffer_integrity=TRANSPORT), Session(KEY, buffer_integrity=TRANSPORT)
    frames = two_arrays(sender)
    corrupted = bytearray(frames[index])
    corrupted[len(corrupted) // 2] ^= 0x01
    frames[index] = bytes(corrupted)
    with pytest.raises(SignatureError) as info:
        receiver.deserialize(relay(dealer, router, frames))
    assert not isinstance(info.value, BufferIntegrityMismatch)


def _edit_content(frames: list[bytes], edit: Any) -> list[bytes]:
    content = json.loads(frames[5])
    edit(content)
    return [*frames[:5], json.dumps(content, separators=(",", ":")).encode(), *frames[6:]]


def _set(path: tuple[str, ...], value: Any) -> Any:
    def edit(content: dict[str, Any]) -> None:
        target = content
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


LENGTH_AND_DESCRIPTOR_TAMPERING: dict[str, Any] = {
    # Buffer lengths and count (the frames themselves).
    "truncate buffer": lambda f: [*f[:6], f[6][:-4], f[7]],
    "extend buffer": lambda f: [*f[:6], f[6] + b"\0\0\0\0", f[7]],
    "drop a buffer": lambda f: f[:7],
    "add a buffer": lambda f: [*f, b"extra"],
    "swap buffers": lambda f: [*f[:6], f[7], f[6]],  # different lengths: the order is signed
    # Descriptors (in the signed content), rewritten so that they still describe a valid array.
    "shape": lambda f: _edit_content(f, _set(("a", "__array__", "shape"), [4, 4])),
    "dtype": lambda f: _edit_content(f, _set(("a", "__array__", "dtype"), "<i4")),
    "index": lambda f: _edit_content(f, lambda c: (c["a"]["__array__"].update(buffer=1, dtype="<i8",
                                                                                  shape=[6]),
                                                    c["b"]["__array__"].update(buffer=0, dtype="<f4",
                                                                                  shape=[16]))),
}


@pytest.mark.parametrize("how", list(LENGTH_AND_DESCRIPTOR_TAMPERING))
def test_transport_tampered_buffer_length_or_descriptor_is_rejected(router_dealer, how: str) -> None:
    router, dealer = router_dealer
    sender, receiver = Session(KEY, buffer_integrity=TRANSPORT), Session(KEY, buffer_integrity=TRANSPORT)
    frames = LENGTH_AND_DESCRIPTOR_TAMPERING[how](two_arrays(sender))
    # SignatureError, not MalformedMessage: the HMAC catches it before any descriptor is parsed.
    with pytest.raises(SignatureError):
        receiver.deserialize(relay(dealer, router, frames))


def test_transport_leaves_buffer_bytes_to_the_transport_digest_does_not(router_dealer) -> None:
    """The contract, both ways: a flipped buffer byte passes in transport mode (the transport, not
    the HMAC, must prevent it: hence CURVE or loopback only) and is refused in digest mode."""
    router, dealer = router_dealer
    for mode in (TRANSPORT, DIGEST):
        sender, receiver = Session(KEY, buffer_integrity=mode), Session(KEY, buffer_integrity=mode)
        frames = two_arrays(sender)
        flipped = bytearray(frames[6])
        flipped[5] ^= 0x40
        frames[6] = bytes(flipped)
        received = relay(dealer, router, frames)
        if mode == TRANSPORT:
            got = receiver.deserialize(received).content["a"]
            assert got.tobytes() == bytes(flipped)
            assert got.tobytes() != np.arange(16, dtype=np.float32).tobytes()
        else:
            with pytest.raises(SignatureError):
                receiver.deserialize(received)


def test_digest_mode_is_the_default_and_rejects_a_tampered_byte_of_a_big_buffer(router_dealer) -> None:
    router, dealer = router_dealer
    sender, receiver = Session(KEY), Session(KEY)
    assert sender.buffer_integrity == receiver.buffer_integrity == DIGEST
    array = np.arange(3 << 20, dtype=np.float32)  # 12 MiB: hashed in parallel chunks
    frames = sender.serialize(sender.msg("submit", {"a": array}))
    tampered = bytearray(frames[6])
    tampered[len(tampered) - 1] ^= 0x01  # the last byte of the last chunk
    with pytest.raises(SignatureError):
        receiver.deserialize(relay(dealer, router, [bytes(f) for f in frames[:6]] + [bytes(tampered)]))


# --- both modes ------------------------------------------------------------------------------------

def test_small_messages_are_signed_identically_in_both_modes() -> None:
    digest, transport = Signer(KEY, DIGEST), Signer(KEY, TRANSPORT)
    parts = [b'{"a":1}', b"{}", b"{}", b'{"x":[1,2]}']
    assert digest.sign(parts, []) == transport.sign(parts, [])
    assert digest.sign(parts, [memoryview(b"abc")]) != transport.sign(parts, [memoryview(b"abc")])
    sender = Session(KEY, buffer_integrity=TRANSPORT)
    message = Session(KEY).deserialize(sender.serialize(sender.msg("hello", {"n": 1})))
    assert message.content == {"n": 1}


@pytest.mark.parametrize(("sender_mode", "receiver_mode"), [(TRANSPORT, DIGEST), (DIGEST, TRANSPORT)])
def test_mode_mismatch_between_peers_is_an_error(router_dealer, sender_mode: str, receiver_mode: str) -> None:
    router, dealer = router_dealer
    sender = Session(KEY, buffer_integrity=sender_mode)
    receiver = Session(KEY, buffer_integrity=receiver_mode)
    sender.send(dealer, "submit", {"a": np.ones(1000, dtype=np.float32)})
    with pytest.raises(BufferIntegrityMismatch, match=f"uses '{receiver_mode}'.*'{sender_mode}'"):
        receiver.deserialize(recv_frames(router))


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ProtocolError):
        Session(KEY, buffer_integrity="none")
    with pytest.raises(ConnectionFileError):
        resolve_buffer_integrity("crc32", "tcp://127.0.0.1:5", curve=False)


# --- where transport is allowed, defaults, connection files -----------------------------------------

def test_defaults_and_where_transport_is_allowed() -> None:
    assert resolve_buffer_integrity(None, "tcp://127.0.0.1:5", curve=False) == DIGEST
    assert resolve_buffer_integrity(None, "tcp://192.168.1.4:5", curve=True) == TRANSPORT
    assert resolve_buffer_integrity(DIGEST, "tcp://192.168.1.4:5", curve=True) == DIGEST
    for address in ("tcp://127.0.0.1:5", "tcp://127.8.0.1:5", "tcp://[::1]:5", "tcp://localhost:5",
                    "ipc:///tmp/x.sock", "inproc://x"):
        assert is_loopback_address(address)
        assert resolve_buffer_integrity(TRANSPORT, address, curve=False) == TRANSPORT
    for address in ("tcp://192.168.1.4:5555", "tcp://gpu-box:5555", "tcp://0.0.0.0:5", "tcp://*:5",
                    "tcp://[::]:5", "tcp://127.0.0.1.evil.com:5", "udp://127.0.0.1:5"):
        assert not is_loopback_address(address)
        with pytest.raises(ConnectionFileError, match="refused"):
            resolve_buffer_integrity(TRANSPORT, address, curve=False)
        assert resolve_buffer_integrity(TRANSPORT, address, curve=True) == TRANSPORT


def test_transport_refused_on_a_non_loopback_non_curve_address(tmp_path: Path) -> None:
    remote = "tcp://192.168.1.4:5555"
    data = {"address": remote, "key": "k" * 32, "protocol_version": "1.0", "buffer_integrity": TRANSPORT}
    path = tmp_path / "connection.json"
    path.write_text(json.dumps(data))
    path.chmod(0o600)  # a key file others may read is refused for that alone (test_permissions.py)
    with pytest.raises(ConnectionFileError, match="refused"):
        read_connection_file(path)
    info = ConnectionInfo(address=remote, key="k" * 32, buffer_integrity=TRANSPORT)
    with pytest.raises(ConnectionFileError):
        Client(info)  # refused before any socket exists
    with pytest.raises(ConnectionFileError):
        write_connection_file(tmp_path / "other.json", info)
    # The same file is fine on loopback, and with CURVE.
    path.write_text(json.dumps({**data, "address": "tcp://127.0.0.1:5555"}))
    assert read_connection_file(path).effective_buffer_integrity == TRANSPORT
    path.write_text(json.dumps({**data, "curve": True, "server_public_key": "x" * 40}))
    assert read_connection_file(path).effective_buffer_integrity == TRANSPORT


def test_connection_file_states_the_mode_and_defaults_by_link(tmp_path: Path) -> None:
    info = ConnectionInfo(address="tcp://127.0.0.1:5", key="k" * 32)
    written = write_connection_file(tmp_path / "c.json", info)
    assert json.loads(written.read_text())["buffer_integrity"] == DIGEST
    old = {"address": "tcp://gpu:5", "key": "k" * 32, "protocol_version": "1.0", "curve": True,
           "server_public_key": "x" * 40}  # e.g. issued by `keys create`: no field, CURVE default
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "old.json").chmod(0o600)
    assert read_connection_file(tmp_path / "old.json").effective_buffer_integrity == TRANSPORT


# --- the handshake: client against the fake server and the real one ----------------------------------

@pytest.mark.parametrize(("client_mode", "server_mode"), [(TRANSPORT, DIGEST), (DIGEST, TRANSPORT)])
def test_client_refuses_a_server_with_another_mode(client_mode: str, server_mode: str) -> None:
    server = FakeServer(buffer_integrity=server_mode)
    try:
        info = ConnectionInfo(address=server.address, key=KEY.decode(), buffer_integrity=client_mode)
        client = Client(info, **FAST)
        try:
            with pytest.raises(BufferIntegrityMismatch):
                client.connect(timeout=5)
        finally:
            client.close()
    finally:
        server.stop()


def test_transport_over_curve_fetches_arrays(tmp_path: Path) -> None:
    _, server_secret = write_keypair(tmp_path / "server", "server", role="server")
    _, alice_secret = write_keypair(tmp_path / "allowed", "alice")
    server = FakeServer(curve_keys=load_keypair(server_secret), authorized_keys_dir=str(tmp_path / "allowed"))
    assert server.buffer_integrity == TRANSPORT  # CURVE's default
    info = ConnectionInfo(address=server.address, key=KEY.decode(), curve=True,
                          server_public_key=load_keypair(server_secret)[0].decode())
    try:
        with Client(info, client_key_file=alice_secret, **FAST) as client:
            assert client.buffer_integrity == TRANSPORT
            job_id = client.submit("test.count", {"steps": 3})
            assert client.wait(job_id, timeout=10).succeeded
            assert client.get_artifact(job_id, "counts").tolist() == [0.0, 2.0, 4.0]
    finally:
        server.stop()


@pytest.fixture
def real_server(tmp_path: Path) -> Iterator[Any]:
    """backend/server's Server in this process, started in transport mode on loopback."""
    from backend.server.app import Server, ServerConfig

    server = Server(ServerConfig(data_dir=tmp_path / "data", workers=1, buffer_integrity=TRANSPORT))
    server.start()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            server.run_once(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(10)
    server.close()


def test_real_server_writes_its_mode_and_refuses_other_modes(real_server: Any) -> None:
    info = read_connection_file(real_server.connection_file)
    assert json.loads(real_server.connection_file.read_text())["buffer_integrity"] == TRANSPORT
    with Client(info, **FAST) as client:  # the server's own file: agrees
        job_id = client.submit("system.sleep", {"seconds": 0})
        assert client.wait(job_id, timeout=30).succeeded
        assert client.get_artifact(job_id, "ticks").tolist() == [0.0]
    other = ConnectionInfo(address=info.address, key=info.key, buffer_integrity=DIGEST)
    with Client(other, **FAST) as client, pytest.raises(BufferIntegrityMismatch, match="'transport'"):
        client.connect(timeout=10)
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(info.address)
    session = Session(info.key_bytes)  # digest

    def answer(msg_type: str, content: dict[str, Any]) -> Any:
        session.send(dealer, msg_type, content)
        assert dealer.poll(10_000), "no answer"
        return session.recv(dealer)  # these answers carry no buffers: verifiable in either mode

    try:
        # The server's own check of the hello: a client stating nothing is a 1.0 client, i.e. digest.
        for stated in (None, DIGEST):
            reply = answer(M.HELLO, M.hello_content("1.0", "t", "0", stated))
            assert reply.msg_type == M.ERROR and reply.content["ename"] == "BufferIntegrityMismatch"
            assert reply.content["details"] == {"server_buffer_integrity": TRANSPORT,
                                                "client_buffer_integrity": DIGEST}
        reply = answer(M.HELLO, M.hello_content("1.0", "t", "0", TRANSPORT))
        assert reply.msg_type == "hello_reply" and reply.content["buffer_integrity"] == TRANSPORT
        # A peer that skips the handshake and sends buffers signed the other way: error reply too.
        reply = answer(M.SUBMIT, M.submit_content("system.sleep", {"x": np.ones(4)}))
        assert reply.msg_type == M.ERROR and reply.content["ename"] == "BufferIntegrityMismatch"
    finally:
        dealer.close()
        context.term()


def test_real_server_refuses_an_unknown_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.server.app import Server, ServerConfig, ServerStartError

    monkeypatch.setenv("AVATAR_STUDIO_BUFFER_INTEGRITY", "none")
    server = Server(ServerConfig(data_dir=tmp_path / "data", workers=1))
    try:
        with pytest.raises(ServerStartError, match="unknown buffer_integrity"):
            server.start()
    finally:
        server.close()
    assert not (tmp_path / "data").exists()


def test_frames_layout_is_the_same_in_both_modes() -> None:
    """Only the signature differs: same frame count, same JSON, same buffer frames."""
    content = {"a": np.arange(5, dtype=np.uint8)}
    digest, transport = Session(KEY), Session(KEY, buffer_integrity=TRANSPORT)
    message = digest.msg("x", content)
    a, b = digest.serialize(message), transport.serialize(message)
    assert a[0] == b[0] == DELIMITER and a[1] != b[1]
    assert [bytes(f) for f in a[2:]] == [bytes(f) for f in b[2:]]


# --- an active attacker on the path: what each link + mode lets through ------------------------------

class FlippingProxy:
    """A TCP relay that flips one bit of the client->server stream at byte ``flip_at``: the
    man-in-the-middle that ``transport`` mode leaves to the transport."""

    def __init__(self, upstream_port: int, flip_at: int) -> None:
        import socket

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream_port = upstream_port
        self.flip_at = flip_at
        self.flipped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select
        import socket

        self.listener.settimeout(10)
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        passed = 0
        with client, upstream:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.05)
                for sock in ready:
                    data = bytearray(sock.recv(1 << 16))
                    if not data:
                        return
                    if sock is client:
                        if not self.flipped and passed + len(data) > self.flip_at:
                            data[self.flip_at - passed] ^= 0x10
                            self.flipped = True
                        passed += len(data)
                        upstream.sendall(data)
                    else:
                        client.sendall(data)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@pytest.mark.parametrize(("curve", "mode"), [(False, DIGEST), (False, TRANSPORT), (True, TRANSPORT)])
def test_a_bit_flipped_in_flight(curve: bool, mode: str) -> None:
    """digest: the HMAC refuses it. transport on plain TCP: it goes through, which is why that mode
    is refused on any link where someone could sit in the middle. transport over CURVE: Poly1305
    fails, libzmq drops the connection, nothing reaches the application."""
    context = zmq.Context()
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    for sock in (router, dealer):
        sock.linger = 0
    if curve:
        server_public, server_secret = zmq.curve_keypair()
        router.curve_server = True
        router.curve_publickey, router.curve_secretkey = server_public, server_secret
        dealer.curve_serverkey = server_public
        dealer.curve_publickey, dealer.curve_secretkey = zmq.curve_keypair()
    proxy = FlippingProxy(router.bind_to_random_port("tcp://127.0.0.1"), flip_at=2 << 20)
    dealer.connect(f"tcp://127.0.0.1:{proxy.port}")
    try:
        sender, receiver = Session(KEY, buffer_integrity=mode), Session(KEY, buffer_integrity=mode)
        array = np.arange(1 << 20, dtype=np.float32)  # 4 MiB: the flip lands in its bytes
        sender.send(dealer, "submit", {"a": array})
        if curve:
            assert not router.poll(3000), "a tampered CURVE frame reached the application"
            assert proxy.flipped
        elif mode == DIGEST:
            with pytest.raises(SignatureError):
                receiver.deserialize(recv_frames(router))
        else:
            got = receiver.deserialize(recv_frames(router)).content["a"]
            assert proxy.flipped and got.shape == array.shape
            assert np.count_nonzero(got != array) == 1  # accepted with one value changed
    finally:
        proxy.stop()
        router.close()
        dealer.close()
        context.term()
