"""A tiny in-test job server for the protocol client tests, over real sockets on 127.0.0.1.

``FakeServer`` speaks docs/protocol.md well enough to exercise the client (the real server is
backend/server and has its own end-to-end tests). It runs in a thread with its own zmq context.
Jobs of kind ``test.count`` advance one step per ``step_s`` and send progress events, then
succeed with an array artifact and a file artifact; ``test.fail`` fails; ``test.forever`` runs
until cancelled. (A module with a unique name rather than conftest.py, so that importing it can
never pick up another test directory's conftest.)
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator

from protocol import PROTOCOL_VERSION, ProtocolError, Session
from protocol import messages as M
from protocol.integrity import LEGACY_BUFFER_INTEGRITY, default_buffer_integrity
from protocol.version import is_compatible

KEY = b"0123456789abcdef0123456789abcdef"


@dataclass
class FakeJob:
    job_id: str
    kind: str
    params: dict[str, Any]
    state: str = M.QUEUED
    step: int = 0
    seq: int = 0
    subscribers: dict[bytes, dict[str, Any]] = field(default_factory=dict)  # routing id -> parent header
    data: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"job_id": self.job_id, "kind": self.kind, "state": self.state,
                                  "fraction": self.step / max(1, self.params.get("steps", 5)),
                                  "stage": "count", "message": "", "params": self.params}
        if self.state == M.SUCCEEDED:
            record["data"] = self.data
            record["artifacts"] = artifact_records(self)
        if self.error is not None:
            record["error"] = self.error
        return record


def job_array(job: FakeJob) -> np.ndarray:
    return np.arange(int(job.params.get("steps", 5)), dtype=np.float32) * 2.0


def job_file(job: FakeJob) -> bytes:
    return f"job {job.job_id} counted {job.params.get('steps', 5)}\n".encode()


def job_npy(job: FakeJob) -> bytes:
    """The array artifact as stored: its .npy file (what ranged get_artifact requests slice)."""
    stream = io.BytesIO()
    np.save(stream, job_array(job), allow_pickle=False)
    return stream.getvalue()


def artifact_records(job: FakeJob) -> list[dict[str, Any]]:
    array, data, npy = job_array(job), job_file(job), job_npy(job)
    return [
        {"name": "counts", "kind": "array", "dtype": array.dtype.str, "shape": list(array.shape),
         "size": len(npy), "sha256": hashlib.sha256(npy).hexdigest(), "media_type": "application/x-npy"},
        {"name": "logs/log.txt", "kind": "file", "size": len(data),
         "sha256": hashlib.sha256(data).hexdigest(), "media_type": "text/plain"},
    ]


class FakeServer:
    def __init__(self, key: bytes = KEY, port: int = 0, *, version: str = PROTOCOL_VERSION,
                 jobs: dict[str, FakeJob] | None = None, step_s: float = 0.02,
                 heartbeat_interval_s: float = 0.2,
                 curve_keys: tuple[bytes, bytes] | None = None,
                 authorized_keys_dir: str | None = None,
                 buffer_integrity: str | None = None) -> None:
        # Like the real server: the link's default unless told otherwise (CURVE: transport).
        self.buffer_integrity = buffer_integrity or default_buffer_integrity(curve_keys is not None)
        self.session = Session(key, buffer_integrity=self.buffer_integrity)
        self.version = version
        self.jobs: dict[str, FakeJob] = jobs if jobs is not None else {}
        self.by_idempotency: dict[str, str] = {}
        self.step_s = step_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.received: list[str] = []  # msg_types accepted
        self.rejected = 0
        self.range_requests = 0
        self.rate_limit_every = 0  # > 0: refuse every N-th range request with RateLimited
        self.rate_limited = 0
        self.drop_every = 0  # > 0: never answer every N-th range request (a refusal over the budget)
        self.dropped = 0
        self.context = zmq.Context()
        self.authenticator: ThreadAuthenticator | None = None
        if authorized_keys_dir is not None:  # CURVE: only the public keys in this directory get in
            self.authenticator = ThreadAuthenticator(self.context)
            self.authenticator.start()
            self.authenticator.configure_curve(domain="*", location=authorized_keys_dir)
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.linger = 0
        if curve_keys is not None:
            self.socket.curve_server = True
            self.socket.curve_publickey, self.socket.curve_secretkey = curve_keys
        if port:
            self.socket.bind(f"tcp://127.0.0.1:{port}")
            self.port = port
        else:
            self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stop.is_set():
            return  # already stopped (a test may stop it early to simulate a dead backend)
        self._stop.set()
        self._thread.join(5)
        self.socket.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()
        self.context.term()

    # --- loop ----------------------------------------------------------------------------------
    def _run(self) -> None:
        last_step = time.monotonic()
        while not self._stop.is_set():
            if self.socket.poll(5, zmq.POLLIN):
                frames = self.socket.recv_multipart(copy=False)
                try:
                    msg = self.session.deserialize(frames)
                except ProtocolError:
                    self.rejected += 1
                    continue
                self.received.append(msg.msg_type)
                self._handle(msg)
            if time.monotonic() - last_step >= self.step_s:
                last_step = time.monotonic()
                self._advance()

    def _reply(self, request: Any, content: dict[str, Any], msg_type: str | None = None) -> None:
        self.session.send(self.socket, msg_type or M.reply_type(request.msg_type), content,
                          parent=request, identities=request.identities)

    def _event(self, job: FakeJob, msg_type: str, content: dict[str, Any]) -> None:
        for ident, parent in job.subscribers.items():
            self.session.send(self.socket, msg_type, content, parent=parent, identities=[ident])

    def _handle(self, msg: Any) -> None:
        content = msg.content
        ident = msg.identities[0]
        if msg.msg_type == M.HELLO:
            client_version = content.get("protocol_version")
            if not isinstance(client_version, str) or not is_compatible(client_version, self.version):
                self._reply(msg, M.version_mismatch_content(self.version, client_version), M.ERROR)
                return
            client_mode = content.get("buffer_integrity", LEGACY_BUFFER_INTEGRITY)
            if client_mode != self.buffer_integrity:
                self._reply(msg, M.buffer_integrity_mismatch_content(self.buffer_integrity, client_mode),
                            M.ERROR)
                return
            self._reply(msg, {"protocol_version": self.version, "server_version": "fake",
                              "buffer_integrity": self.buffer_integrity,
                              "session": self.session.session_id, "job_kinds": [],
                              "heartbeat_interval_s": self.heartbeat_interval_s})
        elif msg.msg_type == M.HEARTBEAT:
            self._reply(msg, {"time": content.get("time"), "server_time": time.time()})
        elif msg.msg_type == M.SUBMIT:
            key = content.get("idempotency_key")
            if key in self.by_idempotency:
                job = self.jobs[self.by_idempotency[key]]
                job.subscribers[ident] = msg.header
                self._reply(msg, {"job_id": job.job_id, "state": job.state, "duplicate": True})
                return
            job = FakeJob(uuid.uuid4().hex, content["kind"], dict(content.get("params", {})))
            job.subscribers[ident] = msg.header
            self.jobs[job.job_id] = job
            if isinstance(key, str):
                self.by_idempotency[key] = job.job_id
            self._reply(msg, {"job_id": job.job_id, "state": job.state, "duplicate": False})
        elif msg.msg_type in (M.ATTACH, M.CANCEL, M.GET_ARTIFACT):
            job = self.jobs.get(content.get("job_id"))
            if job is None:
                self._reply(msg, M.error_content(M.E_UNKNOWN_JOB, "no such job"), M.ERROR)
                return
            if msg.msg_type == M.ATTACH:
                job.subscribers[ident] = msg.header
                self._reply(msg, {"job": job.record()})
                if job.state in M.TERMINAL_STATES:
                    self._send_terminal(job)
                else:
                    self._event(job, M.JOB_STATE, {"job_id": job.job_id, "state": job.state})
            elif msg.msg_type == M.CANCEL:
                if job.state not in M.TERMINAL_STATES:
                    job.state = M.CANCELLED
                    self._reply(msg, {"job_id": job.job_id, "state": job.state})
                    self._send_terminal(job)
                else:
                    self._reply(msg, {"job_id": job.job_id, "state": job.state})
            else:
                name = content.get("name")
                records = {r["name"]: r for r in artifact_records(job)}
                if job.state != M.SUCCEEDED or name not in records:
                    self._reply(msg, M.error_content(M.E_UNKNOWN_ARTIFACT, f"no artifact {name!r}"), M.ERROR)
                elif (isinstance(content.get("offset"), int) and self.drop_every
                      and (self.range_requests + self.dropped + 1) % self.drop_every == 0):
                    self.dropped += 1  # the real server drops refusals over its error-reply budget
                elif (isinstance(content.get("offset"), int) and self.rate_limit_every
                      and (self.range_requests + self.rate_limited + 1) % self.rate_limit_every == 0):
                    self.rate_limited += 1  # the real server's pacing of a busy client
                    self._reply(msg, M.error_content("RateLimited", "too many requests; retry in 0.00 s",
                                                     {"retry_after_s": 0.0}), M.ERROR)
                elif isinstance(content.get("offset"), int):  # a range of the stored bytes
                    stored = job_npy(job) if name == "counts" else job_file(job)
                    offset, length = content["offset"], int(content.get("length", len(stored)))
                    self.range_requests += 1
                    self._reply(msg, {"job_id": job.job_id, "name": name, "artifact": records[name],
                                      "offset": offset, "data": stored[offset:offset + min(length, 40)]})
                elif name == "counts":
                    self._reply(msg, {"job_id": job.job_id, "name": name, "artifact": records[name],
                                      "array": job_array(job)})
                else:
                    self._reply(msg, {"job_id": job.job_id, "name": name, "artifact": records[name],
                                      "data": job_file(job)})
        elif msg.msg_type == M.LIST_JOBS:
            self._reply(msg, {"jobs": [j.record() for j in self.jobs.values()]})
        else:
            self._reply(msg, M.error_content(M.E_UNKNOWN_TYPE, msg.msg_type), M.ERROR)

    def _send_terminal(self, job: FakeJob) -> None:
        if job.state == M.SUCCEEDED:
            self._event(job, M.JOB_SUCCEEDED, {"job_id": job.job_id, "data": job.data,
                                               "artifacts": artifact_records(job)})
        elif job.state == M.FAILED:
            assert job.error is not None
            self._event(job, M.JOB_FAILED, {"job_id": job.job_id, "error": job.error})
        else:
            self._event(job, M.JOB_CANCELLED, {"job_id": job.job_id})

    def _advance(self) -> None:
        for job in list(self.jobs.values()):
            if job.state in M.TERMINAL_STATES:
                continue
            if job.state == M.QUEUED:
                job.state = M.RUNNING
                self._event(job, M.JOB_STATE, {"job_id": job.job_id, "state": M.RUNNING})
                continue
            if job.kind == "test.fail":
                job.state = M.FAILED
                job.error = {"ename": "JobInputError", "evalue": "asked to fail", "traceback": ""}
                self._send_terminal(job)
                continue
            steps = int(job.params.get("steps", 5))
            job.step += 1
            job.seq += 1
            self._event(job, M.JOB_PROGRESS, M.progress_content(job.job_id, job.seq, job.step / steps,
                                                               "count", f"step {job.step}"))
            if job.kind == "test.count" and job.step >= steps:
                job.state = M.SUCCEEDED
                job.data = {"counted": steps}
                self._send_terminal(job)
