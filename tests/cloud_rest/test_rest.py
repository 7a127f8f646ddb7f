"""The cloud executors' REST client (nemoflow.executors.rest) against the DGX stub's endpoints.

No DGX Cloud service can run here: rest_stubs.DGXStub speaks the documented Run:ai protocol on 127.0.0.1.
"""

from __future__ import annotations

import time

import pytest
from rest_stubs import SECRET, DGXStub

from nemoflow.errors import ExecutorError
from nemoflow.executors.rest import RestClient

CREDENTIALS = {"grantType": "client_credentials", "clientId": "nemoflow-app", "clientSecret": SECRET}


def _client(stub: DGXStub, **options: float) -> RestClient:
    return RestClient(stub.url, service="DGX Cloud", credential="app_id / app_secret", backoff=0.01, **options)


def test_a_create_answered_500_502_504_is_not_sent_twice(dgx: DGXStub) -> None:
    for status in (500, 502, 504):
        dgx.fail("POST", r"/token$", status)
        with pytest.raises(ExecutorError, match=f"HTTP {status}"):
            _client(dgx).request("POST", "token", json=CREDENTIALS, auth=False)
    assert len(dgx.requests) == 3  # one request each: the workload may have been made


def test_a_create_answered_429_or_503_is_sent_again(dgx: DGXStub) -> None:
    dgx.fail("POST", r"/token$", 503)
    dgx.fail("POST", r"/token$", 429)
    assert _client(dgx).request("POST", "token", json=CREDENTIALS, auth=False)["accessToken"]
    assert len(dgx.requests) == 3


def test_a_long_retry_after_is_cut_to_max_retry_after(dgx: DGXStub) -> None:
    dgx.fail("GET", r"/org-unit/projects$", 429, headers={"Retry-After": "3600"})
    client = RestClient(
        dgx.url,
        service="DGX Cloud",
        credential="app_id / app_secret",
        auth=lambda: {"Authorization": "Bearer stub-token-51d0"},
        max_retry_after=0.5,
    )
    started = time.monotonic()
    assert client.request("GET", "org-unit/projects")["projects"]
    assert 0.45 <= time.monotonic() - started < 10


def test_a_403_is_one_error_naming_the_credential(dgx: DGXStub) -> None:
    from nemoflow.executors.rest import CredentialError

    dgx.fail("GET", r"/org-unit/projects$", 403)
    client = RestClient(dgx.url, service="DGX Cloud", credential="app_id / app_secret", backoff=0.01)
    with pytest.raises(CredentialError, match=r"DGX Cloud denied access \(HTTP 403 .*\(check app_id / app_secret\)"):
        client.request("GET", "org-unit/projects")
    assert len(dgx.requests) == 1  # not retried
