"""How a step's Kubernetes Job is doing, from the Job's conditions and its pod's container state (pure functions
over the objects as the API server returns them)."""

from __future__ import annotations

from typing import Any

from nemoflow.executors.base import JobResult, JobState
from nemoflow.executors.kube_manifest import CONTAINER

# A pod waiting for one of these does not start by itself: the step fails now, and its Job is deleted.
# (ErrImagePull is included: the kubelet's next word for it is ImagePullBackOff, which waits minutes.)
STUCK = {
    "ErrImagePull": "the image could not be pulled",
    "ImagePullBackOff": "the image could not be pulled",
    "InvalidImageName": "the image name is not valid",
    "ErrImageNeverPull": "the image is not on the node and image_pull_policy is 'Never'",
    "CreateContainerConfigError": "the container's configuration refers to something missing (a Secret key?)",
}


def observe(job: dict[str, Any] | None, pods: list[dict[str, Any]], image: str, memory: object = None) -> JobResult:
    """The step's state from the Job (None: it is gone) and its pods (newest first); a finished result names
    Kubernetes' reason: OOMKilled, DeadlineExceeded, ImagePullBackOff..."""
    if job is None:
        return JobResult(JobState.FAILED, None, "its Kubernetes Job was deleted before it finished", "Deleted")
    name = f"Job {job['metadata'].get('namespace', '')}/{job['metadata']['name']}"
    conditions = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    pod = pods[0] if pods else None
    container = _container(pod)
    terminated = ((container or {}).get("state") or {}).get("terminated")
    waiting = ((container or {}).get("state") or {}).get("waiting")
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        return JobResult(JobState.SUCCEEDED, 0, backend_state="Complete")
    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    pod_reason = ((pod or {}).get("status") or {}).get("reason")
    if (failed and failed.get("reason") == "DeadlineExceeded") or pod_reason == "DeadlineExceeded":
        message = (failed or {}).get("message") or "Job was active longer than specified deadline"
        limit = (job.get("spec") or {}).get("activeDeadlineSeconds")
        told = f" (active_deadline_seconds={limit})" if limit is not None else ""
        return JobResult(JobState.TIMEOUT, None, f"{name} DeadlineExceeded{told}: {message}", "DeadlineExceeded")
    if terminated and (failed or terminated.get("exitCode", 0) != 0):
        return _terminated(name, terminated, memory)
    if failed:
        reason = failed.get("reason") or "Failed"
        return JobResult(
            JobState.FAILED, None, f"{name} failed: {reason}: {failed.get('message', '')}".rstrip(": "), reason
        )
    if waiting and waiting.get("reason") in STUCK:
        reason = waiting["reason"]
        detail = f": {waiting['message']}" if waiting.get("message") else ""
        what = STUCK[reason]
        return JobResult(JobState.FAILED, None, f"{name}: {reason} ({what}; image {image!r}){detail}", reason)
    phase = ((pod or {}).get("status") or {}).get("phase")
    if phase == "Running" or (terminated and terminated.get("exitCode") == 0):
        return JobResult(JobState.RUNNING, backend_state=phase or "Running")
    return JobResult(JobState.PENDING, backend_state=phase or "Pending")


def _terminated(name: str, terminated: dict[str, Any], memory: object) -> JobResult:
    code = terminated.get("exitCode")
    reason = terminated.get("reason") or "Error"
    if reason == "OOMKilled":
        limit = f"its memory limit {memory}" if memory is not None else "no memory limit set: the node's"
        error = f"{name}: the container was OOMKilled (out of memory, exit code {code}; {limit}): raise memory="
        return JobResult(JobState.FAILED, code, error, "OOMKilled")
    detail = f": {terminated['message'].strip()}" if terminated.get("message") else ""
    return JobResult(JobState.FAILED, code, f"{name} failed: exit code {code} ({reason}){detail}", reason)


def _container(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == CONTAINER), statuses[0] if statuses else None)


def newest_first(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
