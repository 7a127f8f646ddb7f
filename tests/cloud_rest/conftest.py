"""This folder's fixtures. The REST stubs live in rest_stubs.py: test modules import them by that name,
since ``conftest`` names a different module in every test folder of one pytest run."""

from rest_stubs import _fresh_tokens, dgx, lepton  # noqa: F401  (the fixtures)
