"""KubeRay manifests: built by pure functions, every one valid against the KubeRay CRDs' openAPIV3Schema (shipped
in crds/, from github:ray-project/kuberay ray-operator/config/crd/bases), and bad input refused before any request."""

from __future__ import annotations

import json
import re

import pydantic
import pytest

pytest.importorskip(
    "kubernetes", reason="needs the kubernetes client: pip install 'nemoflow[kubernetes]' (CI installs it)"
)
pytest.importorskip("jsonschema", reason="needs jsonschema: pip install 'nemoflow[kubernetes]' (CI installs it)")

import yaml
from kube_stub import CRD_DIR

import nemoflow
from nemoflow.errors import ExecutorError, UserError
from nemoflow.executors import executor_from_data, executor_to_data, make_executor
from nemoflow.executors.base import Job
from nemoflow.executors.kuberay import MAX_CLUSTER_NAME, MAX_JOB_NAME, resource_name
from nemoflow.ray import RayCluster, RayJob
from nemoflow.ray.kuberay import cluster_manifest, job_manifest, local_schema, validate

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def full_executor(**extra: object) -> nemoflow.KubeRayExecutor:
    """Two worker groups (one with GPUs and autoscaling bounds), volumes, env and labels."""
    fields = {
        "namespace": "ml",
        "ray_version": "2.43.0",
        "head_cpu": "2",
        "head_memory": "8Gi",
        "worker_groups": [
            nemoflow.KubeRayWorkerGroup(group_name="cpu", replicas=2, cpu_per_worker="500m", memory_per_worker="2Gi"),
            nemoflow.KubeRayWorkerGroup(
                group_name="GPU-A100",
                replicas=1,
                min_replicas=0,
                max_replicas=4,
                gpus_per_worker=8,
                cpu_per_worker=16,
                memory_per_worker="128Gi",
            ),
        ],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}],
        "volume_mounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
        "env_vars": {"HF_HOME": "/data/hf", "NCCL_DEBUG": "INFO"},
        "labels": {"team": "nlp", "app.kubernetes.io/part-of": "nemoflow"},
        "crd_dir": str(CRD_DIR),
        **extra,
    }
    return nemoflow.KubeRayExecutor(**fields)


def test_cluster_manifest_with_two_worker_groups_validates_against_the_crd() -> None:
    """No Kubernetes API server can run on this machine; the manifest is checked against the real CRD schema
    (strict: an unknown field fails, as with the API server's fieldValidation=Strict)."""
    executor = full_executor()
    manifest = cluster_manifest("Train Cluster", executor, ["pip install -r /data/requirements.txt"])
    validate(manifest, local_schema(str(CRD_DIR), "RayCluster"))
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    assert manifest["metadata"] == {"name": "train-cluster", "namespace": "ml", "labels": executor.labels}
    spec = manifest["spec"]
    assert spec["rayVersion"] == "2.43.0"
    head = spec["headGroupSpec"]["template"]["spec"]
    assert head["containers"][0]["image"] == "rayproject/ray:2.43.0"
    assert head["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
    assert head["containers"][0]["args"] == ["pip install -r /data/requirements.txt"]
    assert {"name": "HF_HOME", "value": "/data/hf"} in head["containers"][0]["env"]
    assert head["volumes"] == executor.volumes and head["containers"][0]["volumeMounts"] == executor.volume_mounts
    cpu, gpu = spec["workerGroupSpecs"]
    assert (cpu["groupName"], cpu["replicas"], cpu["minReplicas"], cpu["maxReplicas"]) == ("cpu", 2, 2, 2)
    assert (gpu["groupName"], gpu["replicas"], gpu["minReplicas"], gpu["maxReplicas"]) == ("gpu-a100", 1, 0, 4)
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": 16, "memory": "128Gi", "nvidia.com/gpu": 8}
    assert gpu["template"]["metadata"]["labels"] == executor.labels
    assert gpu["template"]["spec"]["volumes"] == executor.volumes


def test_job_manifests_with_and_without_a_cluster_validate_against_the_crd() -> None:
    """No Kubernetes API server can run on this machine; both RayJob shapes are checked against the real CRD."""
    executor = full_executor()
    schema = local_schema(str(CRD_DIR), "RayJob")
    runtime_env = {"env_vars": {"A": "1"}, "working_dir": "https://example.com/code.zip"}
    on_cluster = job_manifest("Eval", executor, "python eval.py", runtime_env, cluster_name="Train Cluster")
    validate(on_cluster, schema)
    assert on_cluster["spec"]["clusterSelector"] == {"ray.io/cluster": "train-cluster"}
    assert "rayClusterSpec" not in on_cluster["spec"]
    assert yaml.safe_load(on_cluster["spec"]["runtimeEnvYAML"]) == runtime_env
    own = job_manifest("Eval", executor, "python eval.py", {}, job_id="eval-1")
    validate(own, schema)
    assert own["spec"]["shutdownAfterJobFinishes"] is True and own["spec"]["jobId"] == "eval-1"
    assert own["spec"]["rayClusterSpec"] == cluster_manifest("x", executor)["spec"]
    assert "clusterSelector" not in own["spec"] and "runtimeEnvYAML" not in own["spec"]


def test_long_and_uppercase_names_become_valid_resource_names() -> None:
    """No Kubernetes API server can run on this machine; names follow RFC 1123 and KubeRay's length limits."""
    long = "My_Very_Long_Experiment.Name/with spaces and UPPER case " * 3
    for name, limit in [("Dev", MAX_CLUSTER_NAME), ("a__b--c", 63), ("-x-", 63), (long, MAX_CLUSTER_NAME), (long, MAX_JOB_NAME), ("ÜBER", 63)]:  # fmt: skip
        made = resource_name(name, limit)
        assert NAME.match(made) and len(made) <= limit, made
    assert resource_name("Dev", 63) == "dev"
    assert resource_name(long + "a", 53) != resource_name(long + "b", 53)  # cut names keep a hash of the whole
    executor = full_executor()
    assert len(cluster_manifest(long, executor)["metadata"]["name"]) <= MAX_CLUSTER_NAME
    assert len(job_manifest(long, executor, "true", {})["metadata"]["name"]) <= MAX_JOB_NAME
    assert nemoflow.KubeRayWorkerGroup(group_name="GPU").group_name == "gpu"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"group_name": "w", "replicas": -1}, "replicas"),
        ({"group_name": "w", "memory_per_worker": "4GB"}, "memory_per_worker"),
        ({"group_name": "w", "cpu_per_worker": "two"}, "cpu_per_worker"),
        ({"group_name": "w", "replicas": 3, "max_replicas": 2}, "min_replicas <= replicas <= max_replicas"),
        ({"group_name": "gpu_workers"}, "RFC 1123"),
        ({"group_name": "w", "gpus": 1}, "gpus"),
    ],
)
def test_bad_worker_group_fields_are_refused_when_made(kube: object, fields: dict, words: str) -> None:
    """No Kubernetes API server can run on this machine; the stub (kube_stub.py, the documented protocol) sees
    no request: pydantic refuses the field when the worker group is made."""
    with pytest.raises(pydantic.ValidationError, match=re.escape(words)):
        nemoflow.KubeRayWorkerGroup(**fields)
    assert kube.requests == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"head_memory": "2 GiB"}, "head_memory"),
        ({"namespace": "ML_Team"}, "namespace"),
        ({"labels": {"team": "n l p"}}, "label"),
        ({"env_vars": {"1BAD": "x"}}, "env_vars"),
        ({"worker_groups": [{"group_name": "a"}, {"group_name": "A"}]}, "unique"),
        ({"head_gpus": 1}, "head_gpus"),
    ],
)
def test_bad_executor_fields_are_refused_when_made(fields: dict, words: str) -> None:
    """No Kubernetes API server can run on this machine; nothing reaches one: the executor refuses the field."""
    with pytest.raises(pydantic.ValidationError, match=re.escape(words)):
        nemoflow.KubeRayExecutor(**fields)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"volume_mounts": [{"name": "data", "mountPath": "/data", "readonly": True}]}, "volumeMounts[0]"),
        ({"volumes": [{"name": "data", "hostPath": {"path": 3}}]}, "volumes[0].hostPath.path = 3"),
        ({"volumes": [{"name": "data", "persistentVolumeClaim": {}}]}, "persistentVolumeClaim"),
        ({"service_type": ["ClusterIP"]}, None),
    ],
)
def test_a_field_the_crd_refuses_is_caught_before_any_request(kube: object, fields: dict, where: str | None) -> None:
    """No Kubernetes API server can run on this machine; the stub (kube_stub.py) speaks the documented protocol
    and must see zero requests: the CRD schema check runs before the first API call."""
    try:
        executor = full_executor(**fields)
    except pydantic.ValidationError:
        assert where is None  # a plain type error is pydantic's to refuse
        return
    with pytest.raises(UserError, match=re.escape(where)) as caught:
        RayCluster("bad", executor).start(wait_until_ready=False)
    assert "RayCluster 'bad'" in str(caught.value) and "CRD schema" in str(caught.value)
    with pytest.raises(UserError, match=re.escape(where)):
        RayJob("bad", executor).start("python x.py")
    assert kube.requests == []  # type: ignore[attr-defined]


def test_dryrun_returns_the_manifest_as_yaml_and_makes_no_request(kube: object) -> None:
    """No Kubernetes API server can run on this machine; the stub (kube_stub.py, the documented protocol) sees
    no request from a dry run."""
    executor = full_executor()
    preview = RayCluster("Dev", executor).start(dryrun=True)
    assert yaml.safe_load(preview) == cluster_manifest("Dev", executor)
    job = yaml.safe_load(RayJob("Eval", executor, cluster_name="Dev").start("python eval.py", dryrun=True))
    assert job["kind"] == "RayJob" and job["spec"]["clusterSelector"] == {"ray.io/cluster": "dev"}
    assert job["spec"]["entrypoint"] == "python eval.py"
    assert kube.requests == []  # type: ignore[attr-defined]


def test_a_step_given_a_kuberay_executor_says_how_to_run_steps_on_kuberay(tmp_path: object) -> None:
    """No Kubernetes API server can run on this machine, and none is needed: the executor refuses a step."""
    executor = make_executor("kuberay", namespace="ml")
    assert isinstance(executor, nemoflow.KubeRayExecutor)
    job = Job("train", "k" * 64, ["true"], tmp_path, tmp_path / "log", str(tmp_path))  # type: ignore[operator]
    with pytest.raises(ExecutorError, match="port_forward") as caught:
        executor.submit(job)
    assert "RayExecutor(address=" in str(caught.value) and "RayCluster" in str(caught.value)


def test_the_executor_round_trips_as_data() -> None:
    """No Kubernetes API server can run on this machine, and none is needed: the executor is recorded in the
    ledger as data and made again from it (worker groups included)."""
    executor = full_executor()
    data = executor_to_data(executor)
    assert data["class"] == "nemoflow.executors.kuberay:KubeRayExecutor"
    again = executor_from_data(json.loads(json.dumps(data)))
    assert again == executor and isinstance(again.worker_groups[1], nemoflow.KubeRayWorkerGroup)
