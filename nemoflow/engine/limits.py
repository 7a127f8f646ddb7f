"""Time limits of steps: stop a job once its time is up, or interrupt an in-process step."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def stopped_after(seconds: float | None, stop: Callable[[], None]) -> Iterator[threading.Event]:
    """Call ``stop`` once ``seconds`` have passed inside the block; the event says whether it came to that."""
    expired = threading.Event()
    if seconds is None:
        yield expired
        return

    def fire() -> None:
        expired.set()
        stop()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()


class TimedOut(BaseException):
    """Raised inside an in-process step when its time limit is up (a BaseException: the step cannot catch it by accident)."""


@contextlib.contextmanager
def alarm_after(seconds: float | None) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with ``TimedOut`` (SIGALRM: only on the main thread; elsewhere no limit)."""
    if seconds is None or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def ring(signum: int, frame: object) -> None:
        raise TimedOut

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
