"""Shell completion (bash, zsh, fish) through argcomplete: subcommands, options, step names, config keys."""

from __future__ import annotations

# Imports inside functions: completion runs on every <TAB> and must load only what the answer needs.
import os
from pathlib import Path
from typing import Any

SHELLS = ("bash", "zsh", "fish")
_MARK = "# nemoflow shell completion"


def _experiment(parsed_args: Any) -> Any:
    from nemoflow.pipeline.loading import load_pipeline

    return load_pipeline(parsed_args.pipeline)


def step_names(prefix: str, parsed_args: Any, **_: Any) -> list[str]:
    """The step names of the pipeline named earlier on the command line."""
    try:
        return [name for name in _experiment(parsed_args).steps if name.startswith(prefix)]
    except Exception:  # completion must never fail loudly
        return []


def config_keys(prefix: str, parsed_args: Any, **_: Any) -> list[str]:
    """``step.param=`` for every argument of every step's config (for build overrides)."""
    from nemoflow.configs.core import Buildable
    from nemoflow.configs.treeops import walk

    try:
        exp = _experiment(parsed_args)
    except Exception:
        return []
    keys = []
    for name, step in exp.steps.items():
        if isinstance(step.task, Buildable):
            for path, node in walk(step.task, name):
                if isinstance(node, Buildable):
                    keys.extend(f"{path}.{param}=" for param in node.__signature__.params)
    return [key for key in keys if key.startswith(prefix)]


def shellcode(shell: str) -> str:
    """The script that makes ``shell`` complete ``nemoflow`` commands."""
    import argcomplete

    return argcomplete.shellcode(["nemoflow"], shell=shell)


def rc_file(shell: str, home: Path | None = None) -> Path:
    """The file ``install`` adds completion to: ~/.bashrc, ~/.zshrc, or fish's own completions folder."""
    home = home or Path.home()
    if shell == "fish":  # fish loads completions/nemoflow.fish itself when `nemoflow` is first completed
        config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        return config / "fish" / "completions" / "nemoflow.fish"
    return home / (".bashrc" if shell == "bash" else ".zshrc")


def install(shell: str, home: Path | None = None) -> Path:
    """Add completion to the shell's rc file (once); returns the file."""
    rc = rc_file(shell, home)
    load = "nemoflow completion fish | source" if shell == "fish" else f'eval "$(nemoflow completion {shell})"'
    line = f"{load}  {_MARK}\n"
    rc.parent.mkdir(parents=True, exist_ok=True)
    text = rc.read_text() if rc.exists() else ""
    if _MARK not in text:
        with open(rc, "a") as handle:
            handle.write(("\n" if text and not text.endswith("\n") else "") + line)
    return rc


def default_shell() -> str:
    name = Path(os.environ.get("SHELL", "bash")).name
    return name if name in SHELLS else "bash"


def autocomplete(parser: Any) -> None:
    """Answer a completion request (the shell sets ``_ARGCOMPLETE``), then exit; else do nothing."""
    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(parser)
