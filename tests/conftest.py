"""Shared by every test folder: this folder is on ``sys.path``, so ``helpers`` and the test modules' own
step and target modules (``steps_for_tests``, ``targets_for_tests``, ...) import from anywhere under tests/."""

import signal

# A test run started in the background of a non-interactive shell (`bash .ci/run &`) inherits SIGINT ignored,
# and so would every build the tests start and interrupt. A handler here is reset to the default across exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
