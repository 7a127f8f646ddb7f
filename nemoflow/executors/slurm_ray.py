"""The sbatch script of a Ray cluster on Slurm: the head on the first node, a worker on each other node.

Used by ``nemoflow.ray.RayCluster`` / ``RayJob`` with a ``SlurmExecutor``, and by a pipeline step on
``SlurmExecutor(ray_cluster=True)``, whose job starts a cluster of its own and runs the step on its head.

The script writes ``head.json`` (address, ports, node count) next to itself once Ray reports every node
alive; that file is what "ready" means to :mod:`nemoflow.ray.slurm`. Each node's ``ray start --block`` runs
in a session of its own, and when its step ends (scancel, the job's end) every process of that session is
ended: Ray's agents and idle workers outlive their raylet otherwise, and Slurm's ``proctrack/linuxproc``
loses processes whose parent died.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from nemoflow.executors.slurm_script import sbatch_directives

if TYPE_CHECKING:
    from nemoflow.executors.slurm import SlurmExecutor

HEAD_FILE = "head.json"
DEFAULT_DASHBOARD_PORT = 8265  # Ray's; the script picks a free port instead, recorded in head.json

# Runs on each node through srun: `bash -c "$RAY_NODE" ray-node <ray start ...>`.
_NODE_WRAPPER = r"""setsid "$@" &
leader=$!
members() { ps -e -o pid=,sid=,stat= | awk -v s="$leader" '$2 == s && $3 !~ /^Z/ {print $1}'; }
end_session() {
    local pids
    pids=$(members)
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
    for _ in $(seq 50); do
        pids=$(members)
        [ -z "$pids" ] && return 0
        sleep 0.2
    done
    kill -KILL $pids 2>/dev/null
    return 0
}
trap 'end_session; exit 143' TERM INT
wait "$leader"
code=$?
end_session
exit "$code"
"""

_ALIVE_NODES = (
    "import sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False);"
    " print(sum(1 for n in ray.nodes() if n['Alive']))"
)
_FREE_PORT = "import socket; s = socket.socket(); s.bind(('', 0)); print(s.getsockname()[1])"


def cluster_script(
    executor: SlurmExecutor,
    *,
    name: str,
    job_name: str,
    cluster_dir: str,
    log_file: str,
    python: str,
    ready_timeout: float,
    pre_ray_start_commands: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    command: str | None = None,
    workdir: str | None = None,
    runtime_env_yaml: str | None = None,
    after: Sequence[str] = (),
    header: str = "",
) -> str:
    """The whole sbatch script. With ``command`` the job runs it on the head once the cluster is ready
    (``RAY_ADDRESS`` set, so ``ray.init()`` attaches) and ends with it; without, it holds the cluster until
    scancel, one live cluster per name (``--dependency=singleton``). With ``runtime_env_yaml`` the command
    goes through ``ray job submit`` with that runtime env. ``after``: Slurm jobs to start after."""
    one_per_node = executor.model_copy(update={"ntasks_per_node": 1, "array": None})
    directives = sbatch_directives(one_per_node, job_name=job_name, log_file=log_file, after=after)
    if command is None:
        directives.append("#SBATCH --dependency=singleton")
    lines = [
        "#!/bin/bash",
        f"# nemoflow: Ray cluster {name!r}; ready when {HEAD_FILE} appears next to this script; scancel stops it",
        *(f"# {line}" for line in header.splitlines()),
        *directives,
        "",
        "set -uo pipefail",
        "export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0",
        *(f"export {key}={shlex.quote(value)}" for key, value in sorted({**executor.env_vars, **(env or {})}.items())),
        f"CLUSTER_DIR={shlex.quote(cluster_dir)}",
        f"PYTHON={shlex.quote(python)}",
        'PY_BIN="$(dirname "$(command -v "$PYTHON")")"',
        'RAY="$PY_BIN/ray"',
        "export PATH=\"$PY_BIN:$PATH\"  # a Ray job's `python` is the cluster's",
        'TEMP_DIR="/tmp/nf-ray-$SLURM_JOB_ID"',
        f"READY_TIMEOUT={int(ready_timeout)}",
        f'rm -f "$CLUSTER_DIR/{HEAD_FILE}"',
    ]
    for pre in pre_ray_start_commands:
        lines.append(f"{pre} || {{ echo {shlex.quote(f'nemoflow: pre-start command failed: {pre}')} >&2; exit 1; }}")
    lines += [
        f"RAY_NODE={shlex.quote(_NODE_WRAPPER)}",
        f'free_port() {{ "$PYTHON" -c {shlex.quote(_FREE_PORT)}; }}',
        'mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        "# the batch script runs on the first node: the head's",
        "HEAD_IP=$(hostname --ip-address | awk '{print $1}')",
        "GCS_PORT=$(free_port); DASHBOARD_PORT=$(free_port); CLIENT_PORT=$(free_port)",
        "AGENT_PORT=$(free_port); METRICS_PORT=$(free_port)",
        "STEPS=()",
        "stop_cluster() {",
        f'    rm -f "$CLUSTER_DIR/{HEAD_FILE}"',
        '    [ "${#STEPS[@]}" -gt 0 ] && kill -TERM "${STEPS[@]}" 2>/dev/null',
        "    wait",
        "}",
        "trap 'stop_cluster; exit 143' TERM INT",
        'fail() { echo "nemoflow: $*" >&2; stop_cluster; exit 1; }',
        "",
        'srun --overlap --nodes=1 --ntasks=1 -w "${NODES[0]}" bash -c "$RAY_NODE" ray-head \\',
        '    "$RAY" start --head --block --node-ip-address="$HEAD_IP" --port="$GCS_PORT" \\',
        '    --dashboard-host="$HEAD_IP" --dashboard-port="$DASHBOARD_PORT" --ray-client-server-port="$CLIENT_PORT" \\',
        '    --dashboard-agent-listen-port="$AGENT_PORT" --metrics-export-port="$METRICS_PORT" \\',
        f'    --temp-dir="$TEMP_DIR" --disable-usage-stats {_resources(executor)} &',
        "STEPS+=($!)",
        "deadline=$((SECONDS + READY_TIMEOUT))",
        'until "$RAY" status --address="$HEAD_IP:$GCS_PORT" >/dev/null 2>&1; do',
        '    kill -0 "${STEPS[0]}" 2>/dev/null || fail "the Ray head ended before it was ready"',
        '    [ "$SECONDS" -lt "$deadline" ] || fail "the Ray head was not ready in ${READY_TIMEOUT}s"',
        "    sleep 2",
        "done",
        'for node in "${NODES[@]:1}"; do',
        '    srun --overlap --nodes=1 --ntasks=1 -w "$node" bash -c "$RAY_NODE" ray-worker \\',
        '        "$RAY" start --block --address="$HEAD_IP:$GCS_PORT" --temp-dir="$TEMP_DIR" \\',
        f"        --disable-usage-stats {_resources(executor)} &",
        "    STEPS+=($!)",
        "done",
        'if [ "${#NODES[@]}" -gt 1 ]; then',
        f'    until [ "$("$PYTHON" -c {shlex.quote(_ALIVE_NODES)} "$HEAD_IP:$GCS_PORT" 2>/dev/null || echo 0)" \\',
        '        -ge "${#NODES[@]}" ]; do',
        '        [ "$SECONDS" -lt "$deadline" ] || fail "not every Ray worker joined in ${READY_TIMEOUT}s"',
        "        sleep 2",
        "    done",
        "fi",
        'printf \'{"job_id": "%s", "host": "%s", "gcs_port": %s, "dashboard_port": %s, '
        '"client_port": %s, "nodes": %s, "temp_dir": "%s"}\\n\' \\',
        '    "$SLURM_JOB_ID" "$HEAD_IP" "$GCS_PORT" "$DASHBOARD_PORT" "$CLIENT_PORT" "${#NODES[@]}" "$TEMP_DIR" \\',
        f'    > "$CLUSTER_DIR/{HEAD_FILE}.tmp" && mv "$CLUSTER_DIR/{HEAD_FILE}.tmp" "$CLUSTER_DIR/{HEAD_FILE}"',
        f'echo "nemoflow: Ray cluster {name} ready on ${{#NODES[@]}} node(s), dashboard http://$HEAD_IP:$DASHBOARD_PORT"',
    ]
    lines += _run_lines(command, workdir, runtime_env_yaml) if command is not None else _hold_lines()
    return "\n".join(lines) + "\n"


def _resources(executor: SlurmExecutor) -> str:
    gpus = f" --num-gpus={executor.gpus_per_node}" if executor.gpus_per_node else ""
    return '--num-cpus="${SLURM_CPUS_ON_NODE:-1}"' + gpus


def _hold_lines() -> list[str]:
    return [
        "# hold the cluster until scancel (or until the head ends)",
        'wait "${STEPS[0]}"',
        "code=$?",
        "stop_cluster",
        'exit "$code"',
    ]


def _run_lines(command: str, workdir: str | None, runtime_env_yaml: str | None) -> list[str]:
    lines = ['export RAY_ADDRESS="$HEAD_IP:$GCS_PORT"']
    if workdir:
        lines.append(f"cd {shlex.quote(workdir)} || fail {shlex.quote(f'no working folder {workdir}')}")
    if runtime_env_yaml:
        submit = (
            '"$RAY" job submit --address="http://$HEAD_IP:$DASHBOARD_PORT" --working-dir=. '
            f"--runtime-env={shlex.quote(runtime_env_yaml)} -- {command}"
        )
        lines.append(f'srun --overlap --nodes=1 --ntasks=1 -w "${{NODES[0]}}" bash -c {shlex.quote(submit)}')
    else:
        lines.append(f'srun --overlap --nodes=1 --ntasks=1 -w "${{NODES[0]}}" bash -c {shlex.quote(command)}')
    return ["code=0", *lines[:-1], f"{lines[-1]} || code=$?", "stop_cluster", 'exit "$code"']
