"""The peers' virtual environment (Snakemake, luigi, doit, matplotlib), installed by the benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

PACKAGES = ["snakemake", "luigi", "doit", "matplotlib"]
BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".peers" / "venv"
_STAMP = VENV / "bench-installed.json"


def venv_bin(name: str) -> Path:
    """A program in the peers' venv."""
    return VENV / "bin" / name


def ensure_venv(log: Callable[[str], None] = print) -> None:
    """Create the venv and install the peers, unless an earlier run already did."""
    if _STAMP.exists() and json.loads(_STAMP.read_text()).get("packages") == PACKAGES:
        return
    log(f"installing peers into {VENV} (one time): {' '.join(PACKAGES)}")
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip_log = VENV.parent / "pip.log"
    with open(pip_log, "wb") as out:
        done = subprocess.run(
            [str(venv_bin("python")), "-m", "pip", "install", "--disable-pip-version-check", *PACKAGES],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode:
        tail = pip_log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError("installing the peers failed:\n" + "\n".join(tail) + f"\n(full log: {pip_log})")
    _STAMP.write_text(json.dumps({"packages": PACKAGES}))


def peer_versions() -> dict[str, str]:
    """Installed versions of the peers' packages (and of Python) in the venv."""
    code = (
        "import json, platform, importlib.metadata as m; "
        f"d = {{p: m.version(p) for p in {PACKAGES!r}}}; d['python'] = platform.python_version(); "
        "print(json.dumps(d))"
    )
    out = subprocess.run([str(venv_bin("python")), "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main_versions() -> dict[str, str]:
    """Versions in the interpreter that runs nemoflow."""
    found = {"python": sys.version.split()[0]}
    for package in ("nemoflow", "luigi"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found
