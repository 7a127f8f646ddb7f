"""A small JSON REST client for the cloud executors: bounded retries with backoff, clear auth errors.

Retries are urllib3's ``Retry`` mounted on a ``requests`` session: connection errors, 429 and 5xx
are retried up to ``retries`` times with exponential backoff, and a 429/503 ``Retry-After`` is
honoured (up to ``max_retry_after`` seconds). A POST (a create) is retried only on 429 and 503, which
say the request was not served: a 500/502/504 may come after the workload was made, and a second one
would run the step twice. A 401/403 is one :class:`CredentialError` naming the credential to fix.
Secrets are sent in headers or bodies only; no message here ever contains a request's headers or body.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pydantic

from nemoflow.errors import ExecutorError, UserError

if TYPE_CHECKING:
    import requests

RETRY_STATUS = (429, 500, 502, 503, 504)
_POST_RETRY_STATUS = (429, 503)  # the request was not served: a create can be sent again
MASK = "**********"  # what pydantic writes for a SecretStr
_BODY_CHARS = 300  # how much of an error response a message quotes


class CredentialError(UserError, PermissionError):
    """The service refused the credentials (HTTP 401/403); the message names the one to fix."""


def secret_value(secret: pydantic.SecretStr | None, env_var: str, field: str, owner: str) -> str:
    """The secret's text: the field when set, else the environment variable; a UserError naming both when neither."""
    if secret is not None and secret.get_secret_value() not in ("", MASK):  # MASK: read back from the ledger
        return secret.get_secret_value()
    value = os.environ.get(env_var, "")
    if not value:
        raise UserError(f"{owner} needs {field}", hint=f"set {field}=... or the environment variable {env_var}")
    return value


class RestClient:
    """JSON over HTTP to one service.

    Args:
        base_url: prefix of every path.
        service: the service's name in messages (``"DGX Cloud"``).
        credential: what to fix when the service answers 401/403 (``"app_id / app_secret"``).
        auth: returns the headers that authenticate a request (called per request, so a token can be renewed).
        retries: how many times a request is retried (connection errors, 429, 5xx).
        backoff: the first retry's delay in seconds; each next one doubles it.
        timeout: seconds to connect and to wait for each read.
        max_retry_after: the longest ``Retry-After`` waited for; a longer one is cut to it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        service: str,
        credential: str,
        auth: Callable[[], dict[str, str]] | None = None,
        retries: int = 5,
        backoff: float = 1.0,
        timeout: float = 30.0,
        max_retry_after: float = 120.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.credential = credential
        self.auth = auth
        self.timeout = timeout
        self.session = _session(retries, backoff, max_retry_after)

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None, auth: bool = True
    ) -> Any:
        """The decoded JSON answer of ``method path`` (None for an empty body); an error for any status >= 400."""
        response = self.send(method, path, json=json, params=params, auth=auth)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        stream: bool = False,
    ) -> requests.Response:
        """The raw response of ``method path`` after the retries; an error for any status >= 400."""
        import requests

        headers = {"Accept": "application/json"}
        if auth and self.auth is not None:
            headers.update(self.auth())
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            response = self.session.request(
                method, url, json=json, params=params, headers=headers, timeout=self.timeout, stream=stream
            )
        except requests.exceptions.RetryError as exc:
            raise ExecutorError(f"{self.service}: {method} {url} kept failing after retries: {_reason(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise ExecutorError(f"{self.service}: cannot reach {url}: {_reason(exc)}") from None
        self.check(response, method, url)
        return response

    def check(self, response: requests.Response, method: str, url: str) -> None:
        """Raise the error a failed ``response`` stands for."""
        status = response.status_code
        if status < 400:
            return
        body = response.text.strip()[:_BODY_CHARS]
        if status in (401, 403):
            word = "rejected the credentials" if status == 401 else "denied access"
            raise CredentialError(
                f"{self.service} {word} (HTTP {status} on {method} {url}): {body or response.reason}",
                hint=f"check {self.credential}",
            )
        raise ExecutorError(f"{self.service}: {method} {url} answered HTTP {status}: {body or response.reason}")


def _session(retries: int, backoff: float, max_retry_after: float) -> requests.Session:
    try:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry
    except ImportError:
        raise UserError(
            "the cloud executors need the requests package", hint="pip install 'nemoflow[dgxcloud]'"
        ) from None

    class _Retry(Retry):
        def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
            if method.upper() == "POST" and status_code not in _POST_RETRY_STATUS:
                return False
            return super().is_retry(method, status_code, has_retry_after)

        def parse_retry_after(self, retry_after: str) -> float:
            return min(super().parse_retry_after(retry_after), max_retry_after)

    retry = _Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUS,
        allowed_methods=None,  # every verb; POST only on 429/503 (_Retry.is_retry)
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _reason(exc: Exception) -> str:
    """The innermost reason of a requests/urllib3 error, without the URL's query or any header."""
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)
    return str(reason)
