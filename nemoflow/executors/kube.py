"""The Kubernetes API client the Kubernetes backends share: which cluster and which credential, and calls that
retry what the API server asks to be retried.

The ``kubernetes`` client is imported only inside functions.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nemoflow.errors import ExecutorError

RETRY_CAP_SECONDS = 30.0  # no single wait between attempts is longer


@dataclass(frozen=True)
class Credential:
    """Where the client's identity comes from: a kubeconfig's context and user, or the pod's service account."""

    kubeconfig: str | None
    context: str | None = None
    user: str | None = None

    def describe(self) -> str:
        if self.kubeconfig is None:
            return "the in-cluster service account (/var/run/secrets/kubernetes.io/serviceaccount)"
        return f"kubeconfig {self.kubeconfig}, context {self.context!r} (user {self.user!r})"


def connect(kubeconfig: str | None, context: str | None, owner: str, executor_class: str) -> tuple[Any, Credential]:
    """A ``kubernetes.client.ApiClient`` for the cluster of ``kubeconfig`` (or ``$KUBECONFIG``, else
    ``~/.kube/config``) and ``context``, else the in-cluster service account; and the credential it uses."""
    try:
        from kubernetes import client, config
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ExecutorError(f"{owner} needs the kubernetes client: pip install 'nemoflow[kubernetes]'") from exc
    # Read the environment now: the client reads $KUBECONFIG once, when it is first imported.
    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    configuration = client.Configuration()
    try:
        config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration, persist_config=False
        )
    except (config.ConfigException, OSError) as exc:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            raise ExecutorError(
                f"no Kubernetes cluster configured: cannot load the kubeconfig {path} ({exc}), and this is not a pod"
                f" (set KUBECONFIG, or {executor_class}(kubeconfig=..., context=...))"
            ) from exc
        return client.ApiClient(configuration), Credential(None)
    return client.ApiClient(configuration), _kubeconfig_credential(path, context)


def _kubeconfig_credential(path: str, context: str | None) -> Credential:
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError):  # pragma: no cover - it loaded a moment ago
        return Credential(path, context)
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    user = ((chosen or {}).get("context") or {}).get("user")
    return Credential(path, (chosen or {}).get("name", context), user)


@dataclass(frozen=True)
class Retry:
    """How often a call is tried again on 429, 5xx or no answer, and how long it waits (doubling each time, or
    the server's ``Retry-After``)."""

    attempts: int = 5
    backoff: float = 0.5


def call(
    make: Callable[[], Any],
    what: str,
    verb: str,
    *,
    credential: Credential,
    host: str,
    retry: Retry,
    missing: Any = ...,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """``make()``, retried as ``retry`` says; the client's errors as one ExecutorError naming ``what`` and, on
    401/403, the credential to fix. A 404 returns ``missing`` when one is given."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    for attempt in range(1, retry.attempts + 1):
        last = attempt == retry.attempts
        try:
            return make()
        except ApiException as exc:
            if exc.status == 404 and missing is not ...:
                return missing
            if exc.status in (401, 403):
                raise ExecutorError(
                    f"the Kubernetes API at {host} refused to let {credential.describe()} {verb} {what}:"
                    f" {api_message(exc)}. Fix that credential"
                    + (
                        " (its token or certificate is wrong or expired: refresh it)"
                        if exc.status == 401
                        else f" or its RBAC{_can_i(credential, verb, what)}"
                    )
                ) from exc
            if (exc.status == 429 or exc.status >= 500) and not last:
                sleep(min(_retry_after(exc) or retry.backoff * 2 ** (attempt - 1), RETRY_CAP_SECONDS))
                continue
            tries = f" (after {attempt} attempts)" if attempt > 1 else ""
            raise ExecutorError(f"could not {verb} {what}: {api_message(exc)}{tries}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # refused, timed out, TLS: no answer
            if not last:
                sleep(min(retry.backoff * 2 ** (attempt - 1), RETRY_CAP_SECONDS))
                continue
            raise ExecutorError(
                f"could not {verb} {what}: the Kubernetes API at {host} did not answer after {attempt} attempts ({exc})"
            ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def api_message(exc: Any) -> str:
    """The API server's ``Status`` message of an ApiException, with its HTTP status."""
    message = ""
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = str(exc.body or "")[:300]
    return f"HTTP {exc.status} {exc.reason or ''}".rstrip() + (f": {message}" if message else "")


def _retry_after(exc: Any) -> float | None:
    value = (getattr(exc, "headers", None) or {}).get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(when.timestamp() - time.time(), 0.0) if when else None


def _can_i(credential: Credential, verb: str, what: str) -> str:
    kind = what.split()[0].lower()
    context = f" --context {credential.context}" if credential.context else ""
    return f", e.g. check with: kubectl{context} auth can-i {verb.split()[0]} {kind}"
