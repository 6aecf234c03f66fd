"""Fixtures for the protocol tests: real sockets on 127.0.0.1 and a tiny in-test job server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from protocol_fakes import FakeServer


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


@pytest.fixture
def router_dealer() -> Iterator[tuple[zmq.Socket[Any], zmq.Socket[Any]]]:
    """A connected ROUTER/DEALER pair over real TCP on 127.0.0.1."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    dealer = context.socket(zmq.DEALER)
    for sock in (router, dealer):
        sock.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    yield router, dealer
    router.close(linger=0)
    dealer.close(linger=0)
    context.term()
