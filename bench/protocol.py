"""Protocol benchmark: our signed, zero-copy messages against raw pyzmq sending the same frames.

    .venv/bin/python bench/protocol.py            # full run (1, 16, 256 MiB; a few minutes on 2 cores)
    .venv/bin/python bench/protocol.py --quick    # smaller counts

Both sides run over real TCP on 127.0.0.1, DEALER -> ROUTER, in the same run, for each link and
buffer-integrity mode (docs/protocol.md §2.1):
- *raw*: ``send_multipart(frames, copy=False)`` of the exact frames our protocol produced in that
  mode (delimiter, signature, 4 JSON frames, the array buffer), received with
  ``recv_multipart(copy=False)`` and wrapped with ``np.frombuffer``: the floor any protocol on
  ZeroMQ can reach on that link.
- *ours*: ``Session.send`` (serialize + sign) and ``Session.recv`` (verify, replay check, JSON parse,
  array restore). In ``digest`` mode signing and verifying each hash the whole buffer; in
  ``transport`` mode they sign its length only.
Links: ``ipc`` (the local server's default endpoint, made by the same ``local_endpoint`` the server
uses, in a fresh 0700 folder), ``tcp`` (plain loopback TCP, the fallback where ipc is unavailable)
and ``curve`` (CurveZMQ over loopback TCP on both raw and ours: libzmq encrypts and authenticates
every frame, so raw pays for that too). Rows: ipc with its default integrity (``transport``, marked
``<- default local``), tcp+digest (the TCP fallback's default), tcp+transport, curve+transport,
plus curve+digest unless ``--no-curve-digest``; ``--links`` picks a subset.
The ratio column is the median over the repeats of (raw time / our time), each repeat measuring
raw and ours back to back; the GiB/s columns are the best repeat of each.
Two throughput modes: *sequential* (send one, receive it, repeat: latency-bound, one thread) and
*streaming* (a sender thread keeps sending while the main thread receives). Raw and ours are
measured alternately, best of 3-5 repeats. Round trip: a small request and its reply, p50/p99
(the same in both modes: messages without buffers are signed identically).
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.server.datadir import local_endpoint
from protocol import Limits, Session
from protocol.integrity import DIGEST, TRANSPORT, resolve_buffer_integrity
from protocol.signing import _hash_threads, buffer_digests, set_hash_threads

KEY = os.urandom(32)
MiB = 1 << 20
# The bench sends single arrays above the default 128 MiB frame cap (docs/protocol.md §3) to
# measure the codec itself; a real server and client refuse such frames.
BENCH_LIMITS = Limits(max_frame_bytes=1 << 30)


_IPC_DIR = tempfile.mkdtemp(prefix="avs-bench-")  # 0700, like a data dir
atexit.register(shutil.rmtree, _IPC_DIR, ignore_errors=True)


def ipc_endpoint() -> str:
    """What a local server with a data dir here would bind by default."""
    return local_endpoint(Path(_IPC_DIR))


def socket_pair(context: zmq.Context[Any], curve: bool = False,
                ipc: bool = False) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
    router = context.socket(zmq.ROUTER)
    dealer = context.socket(zmq.DEALER)
    for sock in (router, dealer):
        sock.linger = 0
    if curve:  # no ZAP handler: any client key is accepted, the frames are still encrypted + MACed
        server_public, server_secret = zmq.curve_keypair()
        router.curve_server = True
        router.curve_publickey, router.curve_secretkey = server_public, server_secret
        dealer.curve_serverkey = server_public
        dealer.curve_publickey, dealer.curve_secretkey = zmq.curve_keypair()
    # Streaming: bound the big messages held in flight. Only on the DEALER->ROUTER direction: a ROUTER
    # silently drops what exceeds its send HWM, and the reader's HWM credit comes back in batches.
    dealer.sndhwm = router.rcvhwm = 4
    if ipc:
        router.bind(ipc_endpoint())
        dealer.connect(router.getsockopt_string(zmq.LAST_ENDPOINT))
        return router, dealer
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    return router, dealer


def warm(router: zmq.Socket[Any], dealer: zmq.Socket[Any]) -> None:
    dealer.send(b"warm")
    router.recv_multipart()


def throughput(size_mib: int, count: int, repeats: int, streaming: bool, integrity: str = DIGEST,
               link: str = "tcp") -> tuple[float, float, float]:
    """Best GiB/s for (raw, protocol) on one link, in one buffer-integrity mode, and the median
    over the repeats of raw time / protocol time."""
    context = zmq.Context()
    router, dealer = socket_pair(context, curve=link == "curve", ipc=link == "ipc")
    warm(router, dealer)
    sender = Session(KEY, buffer_integrity=integrity, limits=BENCH_LIMITS)
    receiver = Session(KEY, buffer_integrity=integrity, limits=BENCH_LIMITS)
    array = np.random.default_rng(0).standard_normal(size_mib * MiB // 4, dtype=np.float32)
    frames = sender.serialize(sender.msg("blob", {"a": array}))
    template = [bytes(f) for f in frames[:6]] + frames[6:]  # the buffer stays a zero-copy view

    def raw_send() -> None:
        dealer.send_multipart(template, copy=False)

    def raw_recv() -> None:
        frames = router.recv_multipart(copy=False)
        np.frombuffer(frames[-1].buffer, dtype=np.float32)

    def proto_send() -> None:
        sender.send(dealer, "blob", {"a": array})

    def proto_recv() -> None:
        message = receiver.recv(router)
        assert message.content["a"].nbytes == array.nbytes

    def measure(send: Callable[[], None], recv: Callable[[], None]) -> float:
        start = time.perf_counter()
        if streaming:
            thread = threading.Thread(target=lambda: [send() for _ in range(count)])
            thread.start()
            for _ in range(count):
                recv()
            thread.join()
        else:
            for _ in range(count):
                send()
                recv()
        return time.perf_counter() - start

    raw = proto = float("inf")
    ratios: list[float] = []
    for _ in range(repeats):  # alternate, so that both see the same (shared, noisy) machine
        raw_s = measure(raw_send, raw_recv)
        proto_s = measure(proto_send, proto_recv)
        raw, proto = min(raw, raw_s), min(proto, proto_s)
        ratios.append(raw_s / proto_s)
    router.close()
    dealer.close()
    context.term()
    gib = size_mib * count / 1024
    return gib / raw, gib / proto, statistics.median(ratios)


def round_trip(count: int) -> tuple[list[float], list[float]]:
    """Microsecond round trips of a small request + reply, (raw, protocol)."""
    context = zmq.Context()
    router, dealer = socket_pair(context)
    warm(router, dealer)
    client, server = Session(KEY), Session(KEY)
    request = [bytes(f) for f in client.serialize(client.msg("heartbeat", {"time": 1.0}))]
    reply_frames = [bytes(f) for f in server.serialize(server.msg("heartbeat_reply", {"time": 1.0}))]

    def raw_once() -> float:
        start = time.perf_counter()
        dealer.send_multipart(request)
        frames = router.recv_multipart(copy=False)
        router.send_multipart([frames[0].bytes, *reply_frames])
        dealer.recv_multipart(copy=False)
        return time.perf_counter() - start

    def proto_once() -> float:
        start = time.perf_counter()
        client.send(dealer, "heartbeat", {"time": 1.0})
        message = server.recv(router)
        server.send(router, "heartbeat_reply", {"time": message.content["time"]}, parent=message,
                    identities=message.identities)
        client.recv(dealer)
        return time.perf_counter() - start

    raw: list[float] = []
    proto: list[float] = []
    for _ in range(200):  # warm-up
        raw_once()
        proto_once()
    for _ in range(count):  # interleaved so both see the same machine load
        raw.append(raw_once() * 1e6)
        proto.append(proto_once() * 1e6)
    router.close()
    dealer.close()
    context.term()
    return raw, proto


def hash_speeds(size_mib: int = 64) -> dict[str, float]:
    """GiB/s of the candidate buffer digests on one buffer (best of 3)."""
    data = memoryview(np.random.default_rng(1).integers(0, 255, size_mib * MiB, dtype=np.uint8))
    candidates: dict[str, Callable[[], object]] = {
        "sha256": lambda: hashlib.sha256(data).digest(),
        "blake2b": lambda: hashlib.blake2b(data).digest(),
        "sha512": lambda: hashlib.sha512(data).digest(),
        "sha3_256": lambda: hashlib.sha3_256(data).digest(),
        f"ours (sha256 tree, {_hash_threads()} threads)": lambda: buffer_digests([data]),
    }
    speeds = {}
    for name, run in candidates.items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        speeds[name] = size_mib / 1024 / best
    return speeds


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--sizes", default="1,16,256", help="array sizes in MiB, comma separated")
    parser.add_argument("--hash-threads", type=int, default=None,
                        help="threads hashing big buffers (default: min(8, CPUs))")
    parser.add_argument("--skip-hashes", action="store_true", help="skip the digest speed table")
    parser.add_argument("--no-curve-digest", action="store_true",
                        help="skip the curve+digest rows (CURVE with the redundant byte digest)")
    parser.add_argument("--links", default="ipc,tcp,curve",
                        help="links to measure, comma separated: ipc (the local default), tcp, curve")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats per row (default 5, 3 for 256 MiB; the ratio is their median)")
    args = parser.parse_args()
    set_hash_threads(args.hash_threads)
    plan = {1: (200, 5), 16: (24, 5), 256: (4, 3)}  # (messages, repeats)
    if args.quick:
        plan = {1: (50, 3), 16: (8, 3), 256: (2, 2)}
    if args.repeats:
        plan = {size: (count, args.repeats) for size, (count, _) in plan.items()}
    print(f"# avatar-studio protocol bench: Python {platform.python_version()}, pyzmq {zmq.__version__}, "
          f"libzmq {zmq.zmq_version()}, {os.cpu_count()} CPUs, {_hash_threads()} hash threads")
    if not args.skip_hashes:
        print(f"{'digest (64 MiB, 1 buffer)':<34} {'GiB/s':>6}")
        for name, speed in hash_speeds().items():
            print(f"{name:<34} {speed:>6.2f}")
        print()
    default_endpoint = ipc_endpoint()
    default_integrity = resolve_buffer_integrity(None, default_endpoint, curve=False)
    default_link = default_endpoint.split(":", 1)[0]  # tcp where ipc is unavailable
    print(f"# default local endpoint here: {default_endpoint} ({default_integrity})")
    configs = [(default_link, default_integrity), ("tcp", DIGEST), ("tcp", TRANSPORT), ("curve", TRANSPORT)]
    if not args.no_curve_digest:
        configs.append(("curve", DIGEST))
    wanted = set(args.links.split(","))
    configs = [c for i, c in enumerate(configs) if c[0] in wanted and (i == 0 or c != configs[0])]
    print(f"{'mode':<11} {'link':<6} {'integrity':<10} {'size':>8} {'raw GiB/s':>10} {'ours GiB/s':>11} "
          f"{'ratio':>6}")
    for streaming in (False, True):
        for size in (int(s) for s in args.sizes.split(",")):
            count, repeats = plan.get(size, (max(2, 256 // size), 2))
            for link, integrity in configs:
                raw, ours, ratio = throughput(size, count, repeats, streaming, integrity, link)
                mode = "streaming" if streaming else "sequential"
                mark = "  <- default local" if (link, integrity) == (default_link, default_integrity) else ""
                print(f"{mode:<11} {link:<6} {integrity:<10} {size:>5} MiB {raw:>10.2f} {ours:>11.2f} "
                      f"{ratio:>6.2f}{mark}", flush=True)
    raw_rt, ours_rt = round_trip(500 if args.quick else 3000)
    print(f"\n{'round trip':<11} {'p50 us':>8} {'p99 us':>8}")
    for name, values in (("raw", raw_rt), ("ours", ours_rt)):
        print(f"{name:<11} {percentile(values, 50):>8.1f} {percentile(values, 99):>8.1f}")
    print(f"{'overhead':<11} {percentile(ours_rt, 50) - percentile(raw_rt, 50):>8.1f} "
          f"{percentile(ours_rt, 99) - percentile(raw_rt, 99):>8.1f}")


if __name__ == "__main__":
    main()
