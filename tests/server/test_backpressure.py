"""Delivery under back-pressure: progress may be dropped, replies and terminal events may not.

The server runs in-process (its loop in a thread) so the test can make its socket report a full
peer queue (``zmq.Again``) for a while, as ZeroMQ does when a client stops reading.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from backend.server.app import Server, ServerConfig
from backend.server.jobstore import JobStore
from protocol import messages as M
from protocol.client import Client


class StallingSocket:
    """The server's real ROUTER socket, except that sends fail with EAGAIN while ``stalled``."""

    def __init__(self, socket: zmq.Socket[Any]) -> None:
        self._socket = socket
        self.stalled = threading.Event()
        self.refused = 0

    def send_multipart(self, frames: Any, flags: int = 0, copy: bool = True) -> Any:
        if self.stalled.is_set():
            self.refused += 1
            raise zmq.Again()
        return self._socket.send_multipart(frames, flags=flags, copy=copy)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._socket, name)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[tuple[Server, StallingSocket]]:
    server = Server(ServerConfig(data_dir=tmp_path / "data", workers=1))
    server.start()
    stalling = StallingSocket(server.socket)  # type: ignore[arg-type]
    real_socket = server.socket
    server.socket = stalling  # type: ignore[assignment]
    stop = threading.Event()
    server.loop_lock = threading.Lock()  # type: ignore[attr-defined]  # held per turn; tests take it to look

    def loop() -> None:
        while not stop.is_set():
            with server.loop_lock:  # type: ignore[attr-defined]
                server.run_once(0.05)
            time.sleep(0.001)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield server, stalling
    stop.set()
    thread.join(10)
    server.socket = real_socket
    server.close()


def test_progress_dropped_terminal_event_delivered_later(live_server: tuple[Server, StallingSocket]) -> None:
    server, stalling = live_server
    with Client.from_connection_file(server.connection_file, timeout=10, dead_after_s=30) as client:
        job_id = client.submit("system.sleep", {"seconds": 0.6, "preview": True})
        stalling.stalled.set()  # the client "stops reading" for the whole job
        store = JobStore(server.connection_file.parent / "jobs.sqlite3")  # a second reader
        deadline = time.monotonic() + 20
        while store.get(job_id).state != M.SUCCEEDED:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "job did not finish"
            time.sleep(0.05)
        time.sleep(0.2)
        assert server.stats["dropped_progress"] > 0  # progress was thrown away, not queued
        with server.loop_lock:  # type: ignore[attr-defined]
            waiting = [item.message.msg_type for item in server.sender.outbox]
        assert M.JOB_SUCCEEDED in waiting and M.JOB_PROGRESS not in waiting
        assert client.jobs[job_id].state != M.SUCCEEDED
        stalling.stalled.clear()  # the peer reads again: the kept messages go out, in order
        view = client.wait(job_id, timeout=10)
        assert view.state == M.SUCCEEDED and view.data["ticks"] == 6
        assert stalling.refused > 0
        deadline = time.monotonic() + 5  # the loop thread empties the outbox on its next turns
        while time.monotonic() < deadline:
            with server.loop_lock:  # type: ignore[attr-defined]
                if not server.sender.outbox:
                    break
            time.sleep(0.02)
        with server.loop_lock:  # type: ignore[attr-defined]
            assert not server.sender.outbox
        store.close()
