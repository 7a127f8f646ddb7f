"""The sbatch script of one step: readable, complete, and the same every time for the same inputs."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nemoflow.executors.launchers import HEAD_NODE_LINES, Torchrun, launch_command

if TYPE_CHECKING:
    from nemoflow.executors.slurm import SlurmExecutor


def sbatch_directives(executor: SlurmExecutor, *, job_name: str, log_file: str, after: Sequence[str] = ()) -> list[str]:
    """The ``#SBATCH`` lines for ``executor``'s fields (unset fields are left to the cluster's defaults)."""
    prefix = executor.job_name_prefix or ""
    options: list[tuple[str, Any]] = [
        ("job-name", prefix + job_name),
        ("output", log_file),
        ("account", executor.account),
        ("partition", executor.partition),
        ("qos", executor.qos),
        ("nodes", executor.nodes),
        ("ntasks-per-node", executor.ntasks_per_node),
        ("gpus-per-node", executor.gpus_per_node),
        ("gpus-per-task", executor.gpus_per_task),
        ("cpus-per-task", executor.cpus_per_task),
        ("mem", executor.mem),
        ("time", executor.time),
        ("array", executor.array),
    ]
    lines = [f"#SBATCH --{name}={_directive(value)}" for name, value in options if value is not None]
    if executor.exclusive is True:
        lines.append("#SBATCH --exclusive")
    elif isinstance(executor.exclusive, str) and executor.exclusive:
        lines.append(f"#SBATCH --exclusive={_directive(executor.exclusive)}")
    for name, value in sorted(executor.additional_parameters.items()):
        flag = name.replace("_", "-")
        lines.append(f"#SBATCH --{flag}" if value is True else f"#SBATCH --{flag}={_directive(value)}")
    if after:
        lines.append(f"#SBATCH --dependency={executor.dependency_type}:{':'.join(after)}")
        lines.append("#SBATCH --kill-on-invalid-dep=yes")
    return lines


def srun_command(executor: SlurmExecutor, command: list[str], *, mounts: Sequence[str] = ()) -> list[str]:
    """``srun`` with the container flags (pyxis) and the launcher around ``command``."""
    srun = ["srun"]
    if isinstance(executor.get_launcher(), Torchrun):  # one torchrun per node starts the node's processes
        srun += [f"--nodes={executor.nodes}", f"--ntasks={executor.nodes}", "--ntasks-per-node=1"]
    if executor.container_image:
        srun.append(f"--container-image={executor.container_image}")
        all_mounts = [*executor.container_mounts, *mounts]
        if all_mounts:
            srun.append(f"--container-mounts={','.join(all_mounts)}")
    launched = launch_command(
        command,
        executor.get_launcher(),
        nnodes=executor.nnodes(),
        nproc_per_node=executor.nproc_per_node(),
        extra=executor.launcher_args,
    )
    return [*srun, *launched]


def render_script(
    executor: SlurmExecutor,
    *,
    header: str,
    job_name: str,
    log_file: str,
    workdir: str,
    command: list[str],
    env: Mapping[str, str],
    after: Sequence[str] = (),
    mounts: Sequence[str] = (),
    preview: bool = False,
) -> str:
    """The whole sbatch script: directives, environment, working folder, and the srun line.

    With ``preview`` (``--dry-run``: nothing is uploaded, the cluster is not asked) the values only
    the submission knows are shell variables: ``$HOME`` for the cluster's home folder, and
    ``${NEMOFLOW_RUNTIME_DIGEST}`` / ``${NEMOFLOW_CODE_DIGEST}`` for the uploaded packages' digests,
    so the script stays valid shell; a comment says so.
    """
    lines = ["#!/bin/bash", *(f"# {line}" for line in header.splitlines())]
    lines += sbatch_directives(executor, job_name=job_name, log_file=log_file, after=after)
    lines += ["", "set -eo pipefail"]
    if preview:
        lines += _placeholder_lines([workdir, *env.values(), *command, *mounts])
    lines += [f"export {name}={_quote_env(value, preview)}" for name, value in sorted(env.items())]
    lines.append(f"cd {_word(workdir, preview)}")
    if isinstance(executor.get_launcher(), Torchrun):
        lines += HEAD_NODE_LINES
    run = srun_command(executor, command, mounts=mounts)
    lines.append(" ".join(_quote_arg(a, preview) for a in run))
    return "\n".join(lines) + "\n"


# What a dry run cannot know, written as shell variables (see render_script).
_PLACEHOLDER = re.compile(r"\$HOME(?=/|$)|\$\{NEMOFLOW_[A-Z_]+\}")
_DIGEST_PLACEHOLDERS = {
    "NEMOFLOW_RUNTIME_DIGEST": "the digest of the nemoflow runtime package, known once it is uploaded",
    "NEMOFLOW_CODE_DIGEST": "the digest of the code package, known once it is made",
}


def _placeholder_lines(values: Sequence[str]) -> list[str]:
    """Comments (and a check that stops the script early) for the placeholders ``values`` use."""
    used = {m.group() for value in values for m in _PLACEHOLDER.finditer(value)}
    if not used:
        return []
    lines = ["# dry run: the submitted script has these filled in (#SBATCH lines do not expand variables)"]
    if "$HOME" in used:
        lines.append("#   $HOME: the home folder on the cluster (the job folder's ~)")
    for name, meaning in _DIGEST_PLACEHOLDERS.items():
        if "${" + name + "}" in used:
            lines.append(f"#   ${{{name}}}: {meaning}")
            lines.append(f': "${{{name}:?dry-run placeholder: set it to {meaning.split(",")[0]}}}"')
    return lines


def _word(text: str, preview: bool = False) -> str:
    """One shell word for ``text``; in a preview, its placeholders (see render_script) stay expandable."""
    if not preview:
        return shlex.quote(text)
    parts, start = [], 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > start:
            parts.append(shlex.quote(text[start : match.start()]))
        parts.append(f'"{match.group()}"')
        start = match.end()
    if start < len(text) or not parts:
        parts.append(shlex.quote(text[start:]))
    return "".join(parts)


def _directive(value: Any) -> str:
    """An #SBATCH value; sbatch reads double quotes there, so a value with spaces keeps them."""
    text = str(value)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _quote_arg(arg: str, preview: bool = False) -> str:
    """Quote for the shell, except the launcher's ``$VARIABLE`` references, which must expand."""
    if preview and _PLACEHOLDER.search(arg):
        return _word(arg, preview)
    if "$" in arg and not any(c in arg for c in " '\"\\;&|`"):
        return arg
    return shlex.quote(arg)


def _quote_env(value: str, preview: bool = False) -> str:
    return _word(value, preview)
