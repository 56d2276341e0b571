"""Listening ports for fleet components: free, distinct, and out of the kernel's reach."""

from __future__ import annotations

import socket

import pytest

from tierra.localfleet import runner
from tierra.localfleet.runner import _ephemeral_ports, free_ports


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    low, _ = _ephemeral_ports()
    ports = free_ports(12)
    assert len(set(ports)) == 12
    assert all(10000 <= port < low for port in ports)
    for port in ports:  # each can be listened on now
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_ports(1)[0]))
        taken.listen()
        busy = taken.getsockname()[1]
        spare = free_ports(1)[0]
        # The candidates come in a random order: put the busy port first.
        monkeypatch.setattr(runner.random, "sample", lambda population, k: [busy, spare])
        assert free_ports(1) == [spare]


def test_every_component_of_every_cluster_gets_its_own_port() -> None:
    """The three clusters' 18 ports are all distinct, draw after draw (drawn cluster by
    cluster, about 0.7 % of fleets gave two components the same port)."""
    for _ in range(500):
        ports = runner.cluster_ports(["central", "regional", "edge"])
        assert set(ports) == {"central", "regional", "edge"}
        assert all(set(p) == set(runner.COMPONENT_PORTS) for p in ports.values())
        every = [port for cluster in ports.values() for port in cluster.values()]
        assert len(set(every)) == len(every) == 18
