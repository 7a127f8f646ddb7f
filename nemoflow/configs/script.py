"""``Script``: a shell or Python script (a file, a module or inline text) run as a step.

NeMo Run's ``run.Script`` surface: ``get_name()``, ``to_command(with_entrypoint=...)``, ``m=True`` for
``python -m`` and ``entrypoint=``. ``path`` and ``inline`` are ``None`` when not given (an empty string
counts as not given), so a Script's key and its code fingerprint see exactly the one that is set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from nemoflow.configs.refs import File, StepOutput
from nemoflow.errors import ConfigAssertionError, ConfigValueError, UnknownArgumentError, describe_value, did_you_mean


class Script:
    """A shell or Python script run as a step, from a file (``path``) or ``inline`` text.

    ``args`` may hold step outputs and Files (they become paths); ``env`` is added to the
    environment. The script finds its output folder in ``$NEMOFLOW_OUTPUT_DIR``. With ``m=True``
    (a Python entrypoint) ``path`` names a module, run as ``python -m path``. ``metadata`` is free-form
    data for tools (NeMo Run's field); it is not part of the step's key.

    Raises:
        ConfigAssertionError: neither ``path`` nor ``inline``, an empty ``entrypoint``, or ``m=True``
            without a Python entrypoint (NeMo Run's ``AssertionError``s).
        ConfigValueError: both ``path`` and ``inline``, or an argument or env value of the wrong type.
    """

    _FIELDS = ("path", "inline", "args", "env", "entrypoint", "m")
    _EXTRA = ("metadata",)

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        inline: str | None = None,
        args: Sequence[Any] = (),
        env: Mapping[str, str] | None = None,
        entrypoint: str = "bash",
        m: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        path = os.fspath(path) if path else None
        inline = inline or None
        if path is None and inline is None:
            raise ConfigAssertionError("a Script needs exactly one of path=... or inline=...")
        if path is not None and inline is not None:
            raise ConfigValueError("a Script needs exactly one of path=... or inline=..., not both")
        if not entrypoint:
            raise ConfigAssertionError("a Script needs an entrypoint (bash, python, ...)", path="entrypoint")
        if m and "python" not in entrypoint:
            raise ConfigAssertionError("m=True (python -m) can only be used with a python entrypoint", path="m")
        self.path = path
        self.inline = inline
        self.args = list(args)
        self.env = dict(env or {})
        self.entrypoint = entrypoint
        self.m = bool(m)
        self.metadata = dict(metadata or {})

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._FIELDS and name not in self._EXTRA:
            fields = (*self._FIELDS, *self._EXTRA)
            raise UnknownArgumentError(f"Script has no field {name!r}", path=name, hint=did_you_mean(name, fields))
        if name == "args":
            for i, arg in enumerate(value):
                if not isinstance(arg, (str, int, float, File, StepOutput)):
                    raise ConfigValueError(
                        f"expected str, number, File or step output, got {describe_value(arg)}", path=f"args[{i}]"
                    )
        elif name == "env":
            for key, val in value.items():
                if not isinstance(val, str):
                    raise ConfigValueError(f"expected str, got {describe_value(val)}", path=f"env.{key}")
        object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Script) and all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        what = f"path={self.path!r}" if self.path is not None else f"inline={self.inline!r}"
        module = ", m=True" if self.m else ""
        return f"Script({what}, args={self.args!r}, env={self.env!r}, entrypoint={self.entrypoint!r}{module})"

    def get_name(self) -> str:
        """NeMo Run's short name: the file name of ``path``, or the first 10 characters of ``inline`` with
        every run of other characters than letters and digits made ``_`` (``echo hello world``: ``echo_hello``)."""
        if self.inline is not None:
            return re.sub("[^0-9a-zA-Z]+", "_", self.inline.strip()[:10])
        return os.path.basename(self.path or "")

    def to_command(self, with_entrypoint: bool = False) -> list[str]:
        """NeMo Run's command form: ``[path, *args]`` (``-m`` first for a module) or ``["-c", '"<inline>"']``,
        with the entrypoint in front when ``with_entrypoint``.

        Raises:
            ConfigValueError: ``with_entrypoint=True`` and the entrypoint was emptied.
        """
        if self.inline is not None:
            inline = self.inline.replace('"', '\\"')
            cmd: list[Any] = ["-c", f'"{inline}"']
        else:
            cmd = [*(["-m"] if self.m else []), self.path, *self.args]
        if with_entrypoint:
            if not self.entrypoint:
                raise ConfigValueError("cannot use with_entrypoint=True without an entrypoint", path="entrypoint")
            cmd = [self.entrypoint, *cmd]
        return cmd

    def command(self) -> list[str]:
        """The command line that runs this script (args not yet resolved)."""
        if self.inline is not None:
            if self.entrypoint == "python":
                return ["python", "-c", self.inline, *self.args]
            return [self.entrypoint, "-c", self.inline, "nemoflow-script", *self.args]
        if self.m:
            return [self.entrypoint, "-m", self.path, *self.args]  # type: ignore[list-item]
        return [self.entrypoint, self.path, *self.args]  # type: ignore[list-item]
