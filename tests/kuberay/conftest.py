"""This folder's fixtures. The stub API server lives in kube_stub.py: test modules import it by that name,
since ``conftest`` names a different module in every test folder of one pytest run."""

from kube_stub import kube  # noqa: F401  (the fixture)
