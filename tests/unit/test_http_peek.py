"""The HTTP API notices a client that went away during a long poll, whatever the number of
the client's socket: a service with a thousand tasks holds descriptors past select()'s 1,024."""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Iterator

import pytest

from reconciler.service.http import _peek_closed


@pytest.fixture
def high_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("the descriptor limit is below 1,200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    a, b = socket.socketpair()
    fd = os.dup2(a.fileno(), 1100)
    a.close()
    served = socket.socket(fileno=fd)
    try:
        yield served, b
    finally:
        served.close()
        b.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_open_client_past_1024_is_not_taken_for_gone(
    high_pair: tuple[socket.socket, socket.socket],
) -> None:
    served, _client = high_pair
    assert served.fileno() > 1024
    assert not _peek_closed(served)


def test_a_client_past_1024_that_closed_is_seen_gone(
    high_pair: tuple[socket.socket, socket.socket],
) -> None:
    served, client = high_pair
    client.close()
    assert _peek_closed(served)
