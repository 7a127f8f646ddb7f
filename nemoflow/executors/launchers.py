"""Launchers: how a multi-process step is started on its nodes (``torchrun``, or the command as is)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import pydantic

LauncherName = Literal["torchrun"]

TORCHRUN_PORT = 29500


class Launcher(pydantic.BaseModel):
    """NeMo Run's base launcher: the command is started as it is (``executor.get_launcher()`` without one)."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)

    kind: ClassVar[str] = "none"

    @pydantic.model_serializer(mode="wrap")
    def _with_kind(self, handler: pydantic.SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {"kind": self.kind, **handler(self)}  # read back as the same class (launcher_from_data)


class Torchrun(Launcher):
    """``torchrun``: ``nproc_per_node()`` processes on each of ``nnodes()`` nodes, rendezvous at the head node."""

    kind: ClassVar[str] = "torchrun"

    rdzv_backend: str = "c10d"
    rdzv_port: int = pydantic.Field(default=TORCHRUN_PORT, ge=1, le=65535)
    rdzv_id: int | None = None


LAUNCHERS: dict[str, type[Launcher]] = {"none": Launcher, "torchrun": Torchrun}


def launcher_from_data(value: Any) -> Any:
    """A launcher field's value from data: ``{"kind": "torchrun", ...}`` becomes a :class:`Torchrun`."""
    if isinstance(value, dict):
        fields = dict(value)
        kind = fields.pop("kind", "torchrun")
        if kind not in LAUNCHERS:
            raise ValueError(f"unknown launcher {kind!r}: use one of {', '.join(LAUNCHERS)}")
        return LAUNCHERS[kind](**fields)
    return value


def as_launcher(value: Launcher | str | None) -> Launcher:
    """The launcher object a field value names (``"torchrun"`` -> ``Torchrun()``, None -> ``Launcher()``)."""
    if isinstance(value, Launcher):
        return value
    if value is None:
        return Launcher()
    if value not in LAUNCHERS:
        raise ValueError(f"unknown launcher {value!r}: use one of {', '.join(LAUNCHERS)}")
    return LAUNCHERS[value]()


def torchrun_prefix(
    python: str,
    *,
    nnodes: int,
    nproc_per_node: int,
    rdzv_host: str = "$head_node_ip",
    port: int = TORCHRUN_PORT,
    backend: str = "c10d",
    rdzv_id: str = "$SLURM_JOB_ID",
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
        f"--rdzv_backend={backend}",
        f"--rdzv_endpoint={rdzv_host}:{port}",
        f"--rdzv_id={rdzv_id}",
    ]


def launch_command(
    command: list[str],
    launcher: Launcher | str | None,
    *,
    nnodes: int,
    nproc_per_node: int,
    extra: Sequence[str] = (),
    rdzv_host: str = "$head_node_ip",
    rdzv_id: str = "$SLURM_JOB_ID",
) -> list[str]:
    """``command`` (``python -m ...``) wrapped by ``launcher`` (None: unchanged), with ``extra`` launcher arguments."""
    launcher = as_launcher(launcher)
    if isinstance(launcher, Torchrun):
        prefix = torchrun_prefix(
            command[0],
            nnodes=nnodes,
            nproc_per_node=nproc_per_node,
            rdzv_host=rdzv_host,
            port=launcher.rdzv_port,
            backend=launcher.rdzv_backend,
            rdzv_id=rdzv_id if launcher.rdzv_id is None else str(launcher.rdzv_id),
        )
        prefix = [*prefix, *extra]
        if command[1:2] == ["-m"]:  # python -m MODULE ARGS: torchrun starts MODULE with the same interpreter
            return [*prefix, *command[1:]]
        return [*prefix, "--no_python", *command]
    return command


HEAD_NODE_LINES = [
    'nodes=( $(scontrol show hostnames "$SLURM_JOB_NODELIST") )',
    "head_node=${nodes[0]}",
    'head_node_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | cut -d" " -f1)',
]
