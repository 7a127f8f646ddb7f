"""Error types: what went wrong, where, and what to do about it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def closest(name: str, candidates: Iterable[str], *, n: int = 3) -> list[str]:
    """The candidates most similar to ``name``, best first."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean ...?' hint, or None when nothing is close."""
    matches = closest(name, candidates)
    if not matches:
        return None
    return "did you mean " + " or ".join(repr(m) for m in matches) + "?"


class NemoflowError(Exception):
    """Base class of every error nemoflow raises on purpose."""


class UserError(NemoflowError):
    """Bad input from the user: shown without a traceback, exit code 2.

    Args:
        message: what is wrong, in one sentence.
        where: the file and line, or the config path, it is about.
        hint: what to do instead (a suggestion), when one exists.
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(UserError):
    """A config value or key that does not fit its target's signature.

    ``path`` is the dotted config path (``model.hidden_size``); callers that know more
    of the path prefix it with :meth:`at`.
    """

    def __init__(self, message: str, *, path: str = "", hint: str | None = None) -> None:
        super().__init__(message, where=path or None, hint=hint)
        self.path = path

    def at(self, prefix: str) -> ConfigError:
        """The same error (of the same class) with ``prefix`` put in front of its path."""
        path = f"{prefix}.{self.path}" if self.path else prefix
        return type(self)(self.message, path=path, hint=self.hint)


# Where NeMo Run raises a builtin, nemoflow raises one of these: still a ConfigError (shown without a
# traceback, with its path and hint), and also that builtin, so ported ``except TypeError:`` code catches.


class ConfigTypeError(ConfigError, TypeError):
    """A config error NeMo Run raises as ``TypeError``: an unknown or missing argument, a target that is
    not callable, a target that refused its arguments with a ``TypeError``."""


class ConfigValueError(ConfigError, ValueError):
    """A config error NeMo Run raises as ``ValueError``: a value its parameter refuses, an unsupported
    format, a malformed path."""


class ConfigAttributeError(ConfigError, AttributeError):
    """A config error NeMo Run raises as ``AttributeError``: reading an argument that is not set."""


class ConfigAssertionError(ConfigError, AssertionError):
    """A config error NeMo Run raises as ``AssertionError``: a ``Script`` with neither path nor inline, a
    failing ``assert`` in a dataclass's ``__post_init__``."""


class UnknownArgumentError(ConfigError, TypeError, AttributeError):
    """An argument the target does not take: a ``TypeError`` when passed to the constructor (NeMo Run's
    ``Config(fn, bogus=1)``), an ``AttributeError`` when set or read as an attribute (``cfg.bogus``)."""


class SetValueError(ConfigValueError):
    """``set_value(cfg, path, value)`` could not follow or set ``path`` (NeMo Run's ``SetValueError``)."""


_LIKE: tuple[tuple[type[BaseException], type[ConfigError]], ...] = (
    (AttributeError, ConfigAttributeError),
    (TypeError, ConfigTypeError),
    (ValueError, ConfigValueError),
    (AssertionError, ConfigAssertionError),
)


def config_error_like(exc: BaseException, message: str, *, path: str = "", hint: str | None = None) -> ConfigError:
    """A ConfigError that is also an instance of ``exc``'s builtin kind (TypeError, ValueError, ...)."""
    if isinstance(exc, ConfigError):
        return type(exc)(message, path=path, hint=hint)
    for builtin, cls in _LIKE:
        if isinstance(exc, builtin):
            return cls(message, path=path, hint=hint)
    return ConfigError(message, path=path, hint=hint)


class PipelineError(UserError):
    """A pipeline file that cannot be loaded or planned."""


class StepFailed(NemoflowError):
    """A step ran and failed (non-zero exit, exception, or executor error)."""

    def __init__(self, step: str, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(f"step {step!r} failed: {message}")
        self.step = step
        self.exit_code = exit_code


class BuildFailed(NemoflowError):
    """A build in which at least one step failed; carries the ``BuildResult``."""

    exit_code = 1

    def __init__(self, result: Any) -> None:
        names = ", ".join(outcome.name for outcome in result.failed)
        lines = [f"{len(result.failed)} step(s) failed: {names}"]
        for outcome in result.failed:
            lines.append(f"  {outcome.name}: {outcome.error}")
            log = getattr(outcome, "log", None)
            if log:
                lines += [f"    | {line}" for line in _last_lines(log)]
                lines.append(f"    full log: {log}")
        super().__init__("\n".join(lines))
        self.result = result

    @property
    def summary(self) -> str:
        """The first line: how many steps failed, and which."""
        return str(self).splitlines()[0]


def _last_lines(log: str, count: int = 5) -> list[str]:
    """The last ``count`` non-empty lines of a step's log (none if it is gone)."""
    try:
        with open(log, errors="replace") as handle:
            lines = [line.rstrip() for line in handle.read().splitlines()[-50:] if line.strip()]
    except OSError:
        return []
    return lines[-count:]


def describe_value(value: Any) -> str:
    """A short, readable form of a value for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


class ExecutorError(NemoflowError):
    """A backend (SSH, Slurm, Docker...) refused or failed an operation; the message names the backend's words.

    Args:
        message: what failed, with the backend's own error text.
        exit_code: the exit code of the remote command, when one ran.
    """

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LedgerError(NemoflowError):
    """The provenance ledger could not be read or written (damaged, read-only, disk full): exit code 2.

    The message names the file and what to do.
    """

    exit_code = 2
