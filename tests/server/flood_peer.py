"""A hostile peer for the fairness tests: signs requests correctly, sends many, never reads.

Run as ``python flood_peer.py CONNECTION_FILE --type list_jobs --count N --seconds S``; it stops at
N messages or S seconds, whichever comes first (a bounded flood, loopback only), and prints one
JSON line: ``{"sent": n, "seconds": s}``. Its receive side is as small as ZeroMQ allows
(``RCVHWM`` 1, a small kernel buffer), so the server's replies back up at once, as they do for a
client that stopped reading.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocol import Session, read_connection_file
from protocol import messages as M


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("connection_file", type=Path)
    parser.add_argument("--type", choices=["list_jobs", "heartbeat"], default="list_jobs")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    info = read_connection_file(args.connection_file)
    local = info.address.startswith("ipc://") or info.ip in ("127.0.0.1", "::1", "localhost")
    assert local, "the flood stays on this machine"
    session = Session(info.key.encode("utf-8"), buffer_integrity=info.buffer_integrity)
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    socket.rcvhwm = 1
    socket.setsockopt(zmq.RCVBUF, 4096)
    socket.sndtimeo = 200
    socket.connect(info.address)
    if args.type == "list_jobs":
        msg_type, content = M.LIST_JOBS, {"limit": args.limit}
    else:
        msg_type, content = M.HEARTBEAT, {"time": 0.0}
    sent = 0
    start = time.monotonic()
    deadline = start + args.seconds
    while sent < args.count and time.monotonic() < deadline:
        try:
            socket.send_multipart(session.serialize(session.msg(msg_type, dict(content))), copy=False)
            sent += 1
        except zmq.Again:
            continue  # the server is not taking them as fast as we send: that is the point
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3)}), flush=True)
    socket.close(linger=0)
    context.term()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
