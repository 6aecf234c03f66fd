"""The request handlers: ``hello``, ``heartbeat``, ``submit``, ``attach``, ``cancel``, ``list_jobs``,
``get_artifact`` (docs/protocol.md §3).

Each handler answers with a reply, or raises :class:`BadRequest` (or a quota's ``Refusal``), which
the receiving side (receive.py) turns into an ``error`` reply. A client sees only its own jobs
(an admin sees all): another client's job is answered exactly like a job that does not exist.
"""

from __future__ import annotations

import logging
import mmap
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import backend
from backend.jobs.api import JOB_KINDS
from backend.jobs.confine import check_params
from protocol import PROTOCOL_VERSION, Message, ProtocolError, parse_version
from protocol import messages as M
from protocol.integrity import LEGACY_BUFFER_INTEGRITY
from protocol.kinds import ParamError

from .events import terminal_content
from .inputs import StagedInputs
from .jobstore import IdempotencyConflict, Job
from .params import ParamsError, externalize, refuse_reserved_keys

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger(__name__)

LIST_JOBS_DEFAULT_LIMIT = 1000
LIST_JOBS_MAX_LIMIT = 1_000_000
# Headroom under the message limit for the JSON frames of a get_artifact reply.
ARTIFACT_REPLY_MARGIN = 1 << 20


class BadRequest(Exception):
    """A request we understood but cannot serve; becomes an ``error`` reply with this ``ename``."""

    def __init__(self, ename: str, evalue: str) -> None:
        super().__init__(evalue)
        self.ename = ename
        self.evalue = evalue


Handler = Callable[[bytes, Message], None]


class Handlers:
    """One method per request type; :attr:`by_type` maps the types that need a matching protocol
    version (every one but ``hello``, which is where the versions are compared)."""

    def __init__(self, server: Server) -> None:
        self.server = server  # its config, store, artifacts, executor, sender, live jobs
        self.by_type: dict[str, Handler] = {
            M.SUBMIT: self.submit,
            M.CANCEL: self.cancel,
            M.LIST_JOBS: self.list_jobs,
            M.ATTACH: self.attach,
            M.GET_ARTIFACT: self.get_artifact,
            M.HEARTBEAT: self.heartbeat,
        }

    def reply(self, identity: bytes, request: Message, content: dict[str, Any]) -> None:
        self.server.sender.send(identity, M.reply_type(request.msg_type), content, parent=request)

    def hello(self, identity: bytes, message: Message) -> None:
        server = self.server
        client_version = message.content.get("protocol_version", message.header.get("version"))
        try:
            compatible = parse_version(client_version)[0] == parse_version(PROTOCOL_VERSION)[0]
        except ProtocolError:
            compatible = False
        if not compatible:
            server.sender.send(
                identity,
                M.ERROR,
                M.version_mismatch_content(PROTOCOL_VERSION, client_version),
                parent=message,
            )
            return
        assert server.session is not None
        # Refuse a client that signs buffers another way (an old client states nothing: digest).
        client_mode = message.content.get("buffer_integrity", LEGACY_BUFFER_INTEGRITY)
        if client_mode != server.buffer_integrity:
            content = M.buffer_integrity_mismatch_content(server.buffer_integrity, str(client_mode)[:32])
            server.sender.send(identity, M.ERROR, content, parent=message)
            return
        self.reply(
            identity,
            message,
            {
                "protocol_version": PROTOCOL_VERSION,
                "buffer_integrity": server.buffer_integrity,
                "server_version": backend.__version__,
                "session": server.session.session_id,
                "job_kinds": [{"name": k.name, "description": k.description} for k in JOB_KINDS.values()],
                "heartbeat_interval_s": server.config.heartbeat_interval_s,
                "curve": server.config.curve,
            },
        )

    def heartbeat(self, identity: bytes, message: Message) -> None:
        self.reply(identity, message, {"time": message.content.get("time"), "server_time": time.time()})

    def job_or_error(self, identity: bytes, message: Message) -> Job:
        """The requested job, if this client may see it. Another client's job is answered exactly
        like a job that does not exist (no oracle for other clients' job ids)."""
        assert self.server.store is not None
        job_id = message.content.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise BadRequest(M.E_BAD_REQUEST, f"{message.msg_type} needs a string 'job_id'")
        job = self.server.store.get(job_id)
        if job is None or not self.server.receiver.client_of(identity).may_see(job.owner):
            raise BadRequest(M.E_UNKNOWN_JOB, f"no job with id {job_id[:64]!r}")
        return job

    def submit(self, identity: bytes, message: Message) -> None:
        server = self.server
        assert server.store is not None and server.artifacts is not None and server.executor is not None
        content = message.content
        kind = content.get("kind")
        params = content.get("params", {})
        key = content.get("idempotency_key")
        if not isinstance(kind, str):
            raise BadRequest(M.E_BAD_REQUEST, "submit needs a string 'kind'")
        if kind not in JOB_KINDS:
            raise BadRequest(
                M.E_UNKNOWN_KIND, f"unknown job kind {kind[:64]!r}; known: {', '.join(sorted(JOB_KINDS))}"
            )
        if not isinstance(params, dict):
            raise BadRequest(M.E_BAD_REQUEST, "submit 'params' must be an object")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 256):
            raise BadRequest(M.E_BAD_REQUEST, "'idempotency_key' must be a string of 1-256 characters")
        try:  # the kind's contract (protocol/kinds.py), paths confined, before anything is stored
            refuse_reserved_keys(params)
            check_params(kind, params, server.data_dir, server.config.input_roots)
        except (ParamError, ParamsError) as exc:
            raise BadRequest(M.E_BAD_REQUEST, str(exc)) from None
        client, owner = server.receiver.share_of(identity), server.receiver.client_id_of(identity)
        if key is None or server.store.by_idempotency_key(key, owner) is None:  # a duplicate adds no job
            limits = server.config.queue_limits
            limits.check(client, server.executor.unfinished(client), server.executor.unfinished())
        try:  # inputs are kept only if the job is recorded (inputs.py): a refusal stores nothing
            with StagedInputs(server.artifacts) as inputs:
                stored = externalize(params, server.artifacts, inputs.blobs)
                inputs.admit()
                job, duplicate = server.store.create(kind, stored, key, owner=owner)
        except (IdempotencyConflict, ParamsError) as exc:
            raise BadRequest(M.E_BAD_REQUEST, str(exc)) from None
        server.live_jobs.subscribe(job.job_id, identity, message)
        self.reply(identity, message, {"job_id": job.job_id, "state": job.state, "duplicate": duplicate})
        if duplicate:
            self.send_current_state(identity, job, message)
        else:
            server.executor.submit(job.job_id, kind, job.params, client_id=client)
            log.info("job %s (%s) queued", job.job_id, kind)

    def attach(self, identity: bytes, message: Message) -> None:
        job = self.job_or_error(identity, message)
        if not job.terminal:
            self.server.live_jobs.subscribe(job.job_id, identity, message)
        self.reply(identity, message, {"job": job.to_wire()})
        self.send_current_state(identity, job, message)

    def send_current_state(self, identity: bytes, job: Job, parent: Message) -> None:
        """After attach (or a duplicate submit): the terminal event again, or the live state."""
        if job.terminal:
            self.server.sender.send(
                identity, M.STATE_TERMINAL_EVENT[job.state], terminal_content(job), parent=parent
            )
        else:
            self.server.sender.send(identity, M.JOB_STATE, {"job_id": job.job_id, "state": job.state},
                                    parent=parent)

    def cancel(self, identity: bytes, message: Message) -> None:
        server = self.server
        assert server.executor is not None
        job = self.job_or_error(identity, message)
        if not job.terminal:
            if server.executor.cancel(job.job_id):
                # A queued job is cancelled at once: let the reply carry the final state.
                server.live_jobs.apply(server.executor.service())
            else:  # in the store but unknown to the executor (should not happen): end it here
                server.live_jobs.finish(job.job_id, M.CANCELLED)
            job = self.job_or_error(identity, message)
        self.reply(identity, message, {"job_id": job.job_id, "state": job.state})

    def list_jobs(self, identity: bytes, message: Message) -> None:
        assert self.server.store is not None
        states = message.content.get("states")
        limit = message.content.get("limit", LIST_JOBS_DEFAULT_LIMIT)
        if states is not None and (
            not isinstance(states, list) or not all(s in M.JOB_STATES for s in states)
        ):
            raise BadRequest(M.E_BAD_REQUEST, f"'states' must be a list of {', '.join(M.JOB_STATES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= LIST_JOBS_MAX_LIMIT:
            raise BadRequest(M.E_BAD_REQUEST, f"'limit' must be an integer in [0, {LIST_JOBS_MAX_LIMIT}]")
        client = self.server.receiver.client_of(identity)
        jobs = self.server.store.list(states, limit, owner=None if client.admin else client.client_id)
        self.reply(identity, message, {"jobs": [job.to_wire() for job in jobs]})

    def get_artifact(self, identity: bytes, message: Message) -> None:
        server = self.server
        assert server.store is not None and server.artifacts is not None
        job = self.job_or_error(identity, message)
        name = message.content.get("name")
        if not isinstance(name, str):
            raise BadRequest(M.E_BAD_REQUEST, "get_artifact needs a string 'name'")
        record = server.store.artifact(job.job_id, name) if job.state == M.SUCCEEDED else None
        if record is None:
            raise BadRequest(M.E_UNKNOWN_ARTIFACT, f"job {job.job_id} has no artifact {name[:200]!r}")
        content: dict[str, Any] = {"job_id": job.job_id, "name": name, "artifact": record.to_wire()}
        limits = server.config.limits
        budget = min(limits.max_payload_bytes, limits.max_message_bytes - ARTIFACT_REPLY_MARGIN)
        offset = message.content.get("offset")
        if offset is None and record.size > budget:
            raise BadRequest(
                M.E_BAD_REQUEST,
                f"artifact {name!r} has {record.size} bytes, more than one message may carry: ask for "
                f"ranges (offset, length) of its stored bytes (for an array: its .npy file)",
            )
        if offset is None and record.kind == "array":
            content["array"] = server.artifacts.load_array(record.sha256)  # memory-mapped, sent zero-copy
        elif offset is None:
            content["data"] = self._file_slice(record.sha256, 0, record.size)
        else:  # a range of the stored bytes, for files and (as .npy bytes) arrays alike
            length = message.content.get("length", record.size)
            if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= record.size:
                raise BadRequest(M.E_BAD_REQUEST, f"'offset' must be an int in [0, {record.size}]")
            if isinstance(length, bool) or not isinstance(length, int) or length < 0:
                raise BadRequest(M.E_BAD_REQUEST, "'length' must be a non-negative int")
            length = min(length, budget, record.size - offset)
            content["offset"] = offset
            content["data"] = self._file_slice(record.sha256, offset, length)
        self.reply(identity, message, content)

    def _file_slice(self, sha256: str, offset: int, length: int) -> memoryview:
        """A zero-copy view of part of a stored file (memory-mapped; the mapping lives with the view)."""
        assert self.server.artifacts is not None
        if length == 0:
            return memoryview(b"")
        with open(self.server.artifacts.path(sha256), "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return memoryview(mapped)[offset : offset + length]
