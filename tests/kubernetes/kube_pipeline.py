"""A test pipeline: a local prepare step and a train step on a KubernetesExecutor whose shared volume is
mounted at NF_KUBE_MOUNT (the test's folder, holding the store), as a ReadWriteMany PVC would be.

Environment: NF_KUBE_MOUNT, NF_EXIT (the train step exits with this code), NF_SLEEP (seconds it sleeps),
NF_NO_VOLUME (1: the executor mounts no volume), NF_TOLERATIONS (JSON: the executor's tolerations),
NF_PACKAGER (1: the code ships as a PatternPackager archive, unpacked in the store's .stage folder).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nemoflow


def prepare(n: int) -> None:
    (nemoflow.output_dir() / "numbers.json").write_text(json.dumps(list(range(n))))


def train(numbers: str, exit_code: int = 0, sleep: float = 0.0) -> None:
    print(f"training on {len(json.loads(Path(numbers).read_text()))} numbers in {os.getcwd()}", flush=True)
    time.sleep(sleep)
    if exit_code:
        print("train was told to fail", flush=True)
        sys.exit(exit_code)
    total = sum(json.loads(Path(numbers).read_text()))
    (nemoflow.output_dir() / "model.json").write_text(json.dumps({"total": total, "token": os.environ.get("HF_TOKEN")}))


def executor() -> nemoflow.KubernetesExecutor:
    mount = os.environ["NF_KUBE_MOUNT"]
    shared = not os.environ.get("NF_NO_VOLUME")
    return nemoflow.KubernetesExecutor(
        namespace="default",
        image="python:3.12-slim",
        memory="1Gi",
        cpus="500m",
        python=sys.executable,  # the stub runs the pod's command on this machine
        volumes=[{"name": "store", "persistentVolumeClaim": {"claimName": "nemoflow-store"}}] if shared else [],
        volume_mounts=[{"name": "store", "mountPath": mount}] if shared else [],
        secret_env_vars={"HF_TOKEN": "hf/token"},
        labels={"team": "research"},
        security_context={"runAsUser": os.getuid(), "runAsGroup": os.getgid()},
        tolerations=json.loads(os.environ.get("NF_TOLERATIONS", "[]")),
        packager=nemoflow.PatternPackager(include=["*.py"]) if os.environ.get("NF_PACKAGER") else None,
        active_deadline_seconds=600,
        poll_interval=0.05,
        api_backoff=0.01,
    )


def pipeline() -> nemoflow.Experiment:
    exp = nemoflow.Experiment("kube-train")
    numbers = exp.add(nemoflow.Partial(prepare, n=10), name="prepare")
    task = nemoflow.Partial(
        train,
        numbers=numbers.output("numbers.json"),
        exit_code=int(os.environ.get("NF_EXIT", "0")),
        sleep=float(os.environ.get("NF_SLEEP", "0")),
    )
    exp.add(task, name="train", executor=executor())
    return exp
