"""Shared by every test folder: this folder is on ``sys.path``, so ``helpers`` and the test modules' own
step and target modules (``steps_for_tests``, ``targets_for_tests``, ...) import from anywhere under tests/."""
