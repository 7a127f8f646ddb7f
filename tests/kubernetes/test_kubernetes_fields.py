"""KubernetesExecutor's fields are checked when it is made, and its Job manifest against the Kubernetes schema
(kubernetes-validate) before any request; the API calls' retry rules."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

pytest.importorskip("kubernetes", reason="needs the kubernetes client: pip install 'nemoflow[kubernetes]'")
pytest.importorskip("kubernetes_validate", reason="needs kubernetes-validate: pip install 'nemoflow[kubernetes]'")

import kubernetes_validate
from job_stub import JobStub, kube_fixture, write_kubeconfig  # noqa: F401 - kube_fixture: the `kube` fixture

import nemoflow as run
from nemoflow.errors import ExecutorError
from nemoflow.executors.kube import Credential, Retry, call

from helpers import nemoflow, runs_by_step

PIPELINE = Path(__file__).with_name("kube_pipeline.py")
VOLUME = {"volumes": [{"name": "store", "nfs": {"server": "nfs", "path": "/x"}}]}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"memory": "4 GB"}, "memory must be a Kubernetes quantity"),
        ({"cpus": -1}, "cpus must be a Kubernetes quantity"),
        ({"namespace": "My_Team"}, "namespace must be an RFC 1123 label"),
        ({"labels": {"team": "a b"}}, "a value is at most 63"),
        ({"secret_env_vars": {"HF_TOKEN": "hf"}}, "must be 'secret-name/key'"),
        ({"volume_mounts": [{"name": "cache", "mountPath": "/c"}]}, "names no volume in volumes"),
        ({**VOLUME, "volume_mounts": [{"name": "store", "mountPath": "rel"}]}, "needs an absolute 'mountPath'"),
        ({"image_pull_policy": "Sometimes"}, "image_pull_policy"),
        ({"image": "python 3"}, "image must be an image reference"),
        ({"gpus": -1}, "gpus"),
    ],
)
def test_a_malformed_field_is_a_value_error_when_the_executor_is_made(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run.KubernetesExecutor(**{"image": "python:3.12-slim", **fields})


def test_the_executor_round_trips_as_ledger_data() -> None:
    from nemoflow.executors import executor_from_data, executor_to_data

    executor = run.KubernetesExecutor(
        image="python:3.12-slim", gpus=1, secret_env_vars={"HF_TOKEN": "hf/token"}, **VOLUME,
        volume_mounts=[{"name": "store", "mountPath": "/mnt/store"}], packager=run.PatternPackager(include=["*.py"]),
    )  # fmt: skip
    data = executor_to_data(executor)
    assert executor_from_data(json.loads(json.dumps(data))) == executor
    assert data["fields"]["secret_env_vars"] == {"HF_TOKEN": "hf/token"}  # a reference, never the value


def test_a_field_the_kubernetes_schema_refuses_fails_before_any_request(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and must see
    no request: kubernetes-validate refuses the toleration's unknown field first."""
    shutil.copy(PIPELINE, tmp_path / "kube_pipeline.py")
    tolerations = json.dumps([{"key": "gpu", "operator": "Exists", "efect": "NoSchedule"}])
    env = {"NF_KUBE_MOUNT": str(tmp_path), "NF_TOLERATIONS": tolerations}
    proc = nemoflow("build", "kube_pipeline.py", cwd=tmp_path, env=env)
    assert proc.returncode != 0
    error = runs_by_step(tmp_path)["train"]["error"]
    assert "not valid for Kubernetes 1.33.0" in error and "tolerations.0" in error and "'efect'" in error, error
    assert kube.requests == []


def test_dry_run_shows_the_job_manifest_and_it_is_valid(tmp_path: Path) -> None:
    """--dry-run contacts no API server (there is none here: KUBECONFIG names no file), and shows the Job even
    where no volume is shared (submit would refuse)."""
    shutil.copy(PIPELINE, tmp_path / "kube_pipeline.py")
    env = {"NF_KUBE_MOUNT": "/mnt/elsewhere", "KUBECONFIG": str(tmp_path / "missing")}
    proc = nemoflow("build", "kube_pipeline.py", "--dry-run", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.split("# train: the script it would submit\n", 1)[1]
    manifest = json.loads(text[: text.index("\n}\n") + 2])
    assert manifest["kind"] == "Job" and manifest["spec"]["backoffLimit"] == 0
    for version in ("1.30.0", "1.33.0", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(manifest, version, strict=True)


def _api_error(status: int, retry_after: str | None = None) -> Exception:
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=status, reason="Too Many Requests" if status == 429 else "Internal Server Error")
    exc.headers = {"Retry-After": retry_after} if retry_after else {}
    exc.body = json.dumps({"kind": "Status", "message": "slow down"})
    return exc


def test_a_429_waits_as_long_as_retry_after_says_and_5xx_back_off_doubling() -> None:
    answers = [_api_error(429, "2"), _api_error(500), _api_error(503), "created"]
    waits: list[float] = []

    def make() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result = call(make, "jobs default/x", "create", credential=Credential("k"), host="h", retry=Retry(5, 0.5),
                  sleep=waits.append)  # fmt: skip
    assert result == "created" and waits == [2.0, 1.0, 2.0]


def test_retries_are_bounded() -> None:
    waits: list[float] = []

    def make() -> None:
        raise _api_error(500)

    with pytest.raises(
        ExecutorError, match=r"could not create jobs default/x: HTTP 500 .*slow down \(after 3 attempts\)"
    ):
        call(make, "jobs default/x", "create", credential=Credential("k"), host="h", retry=Retry(3, 0.1),
             sleep=waits.append)  # fmt: skip
    assert waits == [0.1, 0.2]


def test_an_api_server_that_does_not_answer_is_retried_then_named(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    executor = run.KubernetesExecutor(image="python:3.12-slim", kubeconfig=str(config), api_attempts=2, api_backoff=0)
    from nemoflow.executors.base import Handle

    with pytest.raises(ExecutorError, match=rf"the Kubernetes API at http://127.0.0.1:{port} did not answer after 2"):
        executor.cancel(Handle(None, "nf-train-x"))  # type: ignore[arg-type]


def test_a_401_names_the_kubeconfig_user_whose_token_to_fix(kube: JobStub, tmp_path: Path) -> None:
    """No Kubernetes API server can run on this machine; the stub speaks the documented protocol and answers
    401 Unauthorized to a token it does not know, as an API server does."""
    config = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    config.write_text(config.read_text().replace("stub-token", "expired-token"))
    executor = run.KubernetesExecutor(image="python:3.12-slim", kubeconfig=str(config))
    from nemoflow.executors.base import Handle

    with pytest.raises(
        ExecutorError,
        match=r"context 'stub' \(user 'stub'\) delete jobs default/nf-train-x: HTTP 401 .*wrong or expired",
    ):
        executor.cancel(Handle(None, "nf-train-x"))  # type: ignore[arg-type]
    assert len(kube.calls("DELETE", "/jobs/")) == 1  # not retried
