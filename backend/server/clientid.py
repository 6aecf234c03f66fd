"""Who a request is from, for accounting (queue limits, request rates): one ``client_id`` string.

This is the one place that decides it, so that real per-client identities (one CURVE key per
client, branch h/identity) replace it without touching the accounting:

- under CURVE the ZAP handler names the client's key in the frames' ``User-Id`` property, and
  every connection made with that key is the same client;
- otherwise (loopback, one shared HMAC key) a client is a connection: its ZeroMQ routing
  identity. A local user who opens many connections gets many shares; loopback clients are
  trusted users of the machine, and the per-connection bounds still hold for each of them.
"""

from __future__ import annotations

from typing import Any

import zmq


def client_id_of(frames: list[Any], identity: bytes) -> str:
    """The accounting key of the peer that sent ``frames`` (routing identity first)."""
    for frame in frames[:1]:
        try:
            user = frame.get("User-Id")  # set by the ZAP handler (CURVE); absent otherwise
        except (AttributeError, zmq.ZMQError):
            break
        if user:
            return f"key:{user}"
    return f"peer:{identity.hex()}"
