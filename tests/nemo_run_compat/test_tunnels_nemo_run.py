"""SSHTunnel as the design brief writes it: ``timeout=`` and ``compression=``; ``port=None`` as in NeMo Run."""

from __future__ import annotations

import pytest
from integration.services import sshd_service  # noqa: F401  (the loopback sshd of .ci/services.sh)

import nemoflow as run
from nemoflow.executors import tunnels
from nemoflow.executors.slurm import SlurmExecutor


def test_timeout_is_the_connect_timeout() -> None:
    tunnel = run.SSHTunnel(host="cluster", user="me", timeout=5)
    assert tunnel.timeout == 5 and tunnel.connect_timeout == 5
    tunnel.timeout = 7
    assert tunnel.connect_timeout == 7
    assert run.SSHTunnel(host="cluster", user="me", connect_timeout=9).timeout == 9
    assert run.SSHTunnel(host="cluster", user="me").timeout == 30
    with pytest.raises(ValueError):
        run.SSHTunnel(host="cluster", user="me", timeout=0)


def test_compression_and_port_none() -> None:
    tunnel = run.SSHTunnel(host="cluster", user="me", compression=True, port=None)
    assert tunnel.compression is True and tunnel.port == 22
    assert run.SSHTunnel(host="cluster", user="me").compression is False


def test_an_executor_with_such_a_tunnel_round_trips_as_data() -> None:
    from nemoflow.executors import executor_from_data, executor_to_data

    executor = SlurmExecutor(tunnel=run.SSHTunnel(host="cluster", user="me", timeout=5, compression=True))
    data = executor_to_data(executor)
    assert data["fields"]["tunnel"] == {"host": "cluster", "user": "me", "connect_timeout": 5.0, "compression": True}
    assert executor_from_data(data) == executor


def _tunnel(service, **changes) -> run.SSHTunnel:
    fields = dict(host=service.host, port=service.port, user=service.user, identity=service.identity)
    return run.SSHTunnel(**{**fields, "known_hosts": service.known_hosts, "job_dir": "~/jobs", **changes})


def test_compressed_connection_runs_commands(sshd_service) -> None:  # noqa: F811
    tunnel = _tunnel(sshd_service, compression=True, timeout=10)
    try:
        assert tunnel.run("echo hello; echo oops >&2").stdout == "hello\n"
        transport = tunnels._POOL[tunnel.key].conn.transport
        assert "zlib" in transport.local_compression and "zlib" in transport.remote_compression
    finally:
        tunnel.close()
    plain = _tunnel(sshd_service)
    try:
        plain.run("true")
        assert tunnels._POOL[plain.key].conn.transport.local_compression == "none"
    finally:
        plain.close()


def test_pre_command_runs_before_every_command(sshd_service) -> None:  # noqa: F811
    tunnel = _tunnel(sshd_service, pre_command="export GREETING=hi")
    try:
        assert tunnel.run("echo $GREETING").stdout == "hi\n"
        failing = _tunnel(sshd_service, pre_command="false")
        result = failing.run("echo ran", check=False)
        assert result.exit_code != 0 and "ran" not in result.stdout
    finally:
        tunnel.close()
