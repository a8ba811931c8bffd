"""The embedded dev server's start-up against a port taken between choosing it and binding
it (any outgoing connection takes an ephemeral port): seen in CI as `lapse dev` failing to
restart, "the Temporal dev server exited with code 1 during start-up"."""

from __future__ import annotations

import socket

import pytest
from temporalio.client import Client

from infra.embedded import EmbeddedTemporal, StackError
from infra.embedded import _temporal as embedded_temporal


@pytest.fixture
def taken_port():
    """A port some other process holds, listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def first_choice_taken(monkeypatch, port: int, times: int = 1) -> list[list[int]]:
    """`free_ports` chooses `port` among its first `times` choices, then truly free ones."""
    real, chosen = embedded_temporal.free_ports, []

    def choose(count: int, host: str = "127.0.0.1") -> list[int]:
        ports = real(count, host)
        if len(chosen) < times:
            ports[1] = port  # the HTTP port: the frontend's own would fail the probe first
        chosen.append(ports)
        return ports

    monkeypatch.setattr(embedded_temporal, "free_ports", choose)
    return chosen


async def test_a_port_taken_before_the_server_binds_it_is_retried_on_fresh_ports(
        short_tmp, monkeypatch, taken_port):
    chosen = first_choice_taken(monkeypatch, taken_port)
    async with EmbeddedTemporal(short_tmp / "temporal", ui=False) as server:
        client = await Client.connect(server.address)  # asks the server for its version
        assert [w async for w in client.list_workflows()] == []
    assert len(chosen) == 2 and taken_port not in chosen[1]
    log = (short_tmp / "temporal" / "temporal.log").read_text(encoding="utf-8")
    assert f"{taken_port}: bind: address already in use" in log


async def test_a_server_that_keeps_losing_its_port_fails_clearly(short_tmp, monkeypatch,
                                                                   taken_port):
    first_choice_taken(monkeypatch, taken_port, times=3)
    with pytest.raises(StackError, match="exited with code 1 during start-up: see .*temporal.log"):
        await EmbeddedTemporal(short_tmp / "temporal", ui=False, launch_attempts=3).start()
