"""Launchers: how a multi-process step is started on its nodes (``torchrun``, or the command as is)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Launcher = Literal["torchrun"]

TORCHRUN_PORT = 29500


def torchrun_prefix(
    python: str, *, nnodes: int, nproc_per_node: int, rdzv_host: str = "$head_node_ip", port: int = TORCHRUN_PORT
) -> list[str]:
    """The ``torchrun`` arguments for ``nnodes`` nodes of ``nproc_per_node`` processes each.

    The rendezvous endpoint is the Slurm head node (the shell variable ``head_node_ip``, which the
    sbatch script sets); the job id names the rendezvous so two jobs never join each other.
    """
    return [
        python,
        "-m",
        "torch.distributed.run",  # torchrun, from the step's own interpreter
        f"--nnodes={nnodes}",
        f"--nproc_per_node={nproc_per_node}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={rdzv_host}:{port}",
        "--rdzv_id=$SLURM_JOB_ID",
    ]


def launch_command(
    command: list[str], launcher: Launcher | None, *, nnodes: int, nproc_per_node: int, extra: Sequence[str] = ()
) -> list[str]:
    """``command`` (``python -m ...``) wrapped by ``launcher`` (None: unchanged), with ``extra`` launcher arguments."""
    if launcher is None:
        return command
    if launcher == "torchrun":
        prefix = [*torchrun_prefix(command[0], nnodes=nnodes, nproc_per_node=nproc_per_node), *extra]
        if command[1:2] == ["-m"]:  # python -m MODULE ARGS: torchrun starts MODULE with the same interpreter
            return [*prefix, *command[1:]]
        return [*prefix, "--no_python", *command]
    raise ValueError(f"unknown launcher {launcher!r}")  # pragma: no cover - the Literal type refuses it first


HEAD_NODE_LINES = [
    'nodes=( $(scontrol show hostnames "$SLURM_JOB_NODELIST") )',
    "head_node=${nodes[0]}",
    'head_node_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | cut -d" " -f1)',
]
