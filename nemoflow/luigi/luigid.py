"""luigi's central scheduler (``luigid``): its pinned config, its command line, and reaching it.

``nemoflow scheduler`` runs a real ``luigid`` with its state, logs and config under
``<store>/.luigid/``; builds and workers talk to it with ``luigi.build(..., scheduler_url=URL)``
(see :mod:`nemoflow.engine.build`).
"""

from __future__ import annotations

# Imports inside functions: only `nemoflow scheduler` needs them.
import functools
import importlib.util
import ipaddress
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nemoflow.errors import UserError
from nemoflow.store.targets import Store

LUIGID_DIR = ".luigid"
CONFIG_NAME = "luigid.cfg"
STATE_NAME = "state.pickle"
HISTORY_NAME = "history.db"

NO_AUTH_WARNING = (
    "warning: luigid has no authentication; anyone who can reach {host}:{port} can see and change this "
    "scheduler's tasks. Keep it on 127.0.0.1 (ssh -L to reach it), or put it behind a reverse proxy that "
    "authenticates (nginx or Apache with auth, oauth2-proxy), see "
    "https://luigi.readthedocs.io/en/stable/central_scheduler.html"
)


@dataclass(frozen=True)
class LuigidSettings:
    """What ``nemoflow scheduler`` pins in luigid's config."""

    worker_disconnect_delay: float = 60.0  # seconds without a ping before a worker counts as gone
    retry_delay: float = 60.0  # seconds before a failed (or orphaned, its worker gone) step is handed out again
    remove_delay: float = 600.0  # seconds a finished task stays listed once no worker holds it
    # luigi resources and their capacity, for every build and worker of this scheduler: ``executor_<name>``
    # caps the running steps of one executor, ``nemoflow_steps`` all running steps (see nemoflow.luigi.tasks)
    resources: tuple[tuple[str, int], ...] = ()


RESOURCE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def parse_resource(text: str) -> tuple[str, int]:
    """``NAME=N`` (``--resource``) as ``(NAME, N)``; N is a whole number, 0 or more."""
    name, sep, amount = text.partition("=")
    name, amount = name.strip(), amount.strip()
    if not sep or not RESOURCE_NAME.fullmatch(name) or not amount.isdigit():
        raise UserError(
            f"--resource {text!r} is not NAME=N",
            hint="e.g. --resource executor_local=2 (NAME of letters, digits, _ . -; N a whole number)",
        )
    return name, int(amount)


def luigid_dir(store: Store) -> Path:
    return store.root / LUIGID_DIR


def history_available() -> bool:
    """luigi's task history needs sqlalchemy (an optional extra, ``nemoflow[history]``).

    luigi 3.8's ``db_task_history`` runs raw SQL strings, which SQLAlchemy 2 refuses (luigid then
    dies at start-up): only 1.x counts.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return _history_supported(version("sqlalchemy"))
    except PackageNotFoundError:
        return False


def _history_supported(sqlalchemy_version: str) -> bool:
    major = sqlalchemy_version.split(".")[0]
    return major.isdigit() and int(major) < 2


def write_config(folder: Path, settings: LuigidSettings = LuigidSettings()) -> Path:
    """Write luigid's config file under ``folder`` (and make its log folder); return its path.

    Every ``[scheduler]`` option luigid's behaviour here depends on is set explicitly, so a stray
    ``luigi.cfg`` cannot change it; luigid also runs with ``folder`` as its working directory.
    """
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    history = history_available()
    lines = [
        "# written by `nemoflow scheduler`; changes are overwritten",
        "[scheduler]",
        f"state_path = {folder / STATE_NAME}",
        f"worker_disconnect_delay = {settings.worker_disconnect_delay:g}",
        f"retry_delay = {settings.retry_delay:g}",
        f"remove_delay = {settings.remove_delay:g}",
        "retry_count = 999999999",
        "disable_window = 3600",
        "disable_hard_timeout = 999999999",
        # luigid prunes (drops silent workers, re-hands their steps) only every 60 s by itself;
        # on every get_work the worker_disconnect_delay above is what a killed worker costs
        "prune_on_get_work = true",
        "pause_enabled = true",
        "send_messages = true",
        f"record_task_history = {str(history).lower()}",
    ]
    if history:
        lines += ["[task_history]", f"db_connection = sqlite:///{folder / HISTORY_NAME}"]
    if settings.resources:
        # luigid reads the capacity of each resource from here; a resource it does not list counts
        # as having capacity 1 (luigi's Scheduler._has_resources), so nemoflow's tasks ask only for
        # resources the scheduler lists (nemoflow.luigi.handout asks luigid's resource_list)
        lines += ["[resources]", *(f"{name} = {amount}" for name, amount in settings.resources)]
    path = folder / CONFIG_NAME
    path.write_text("\n".join(lines) + "\n")
    return path


def luigid_executable() -> list[str]:
    """luigid of the luigi this Python imports: its script when installed beside the interpreter,
    else the same entry point run by this interpreter (never another Python's luigid from PATH,
    whose luigi might lack what :func:`history_available` found here)."""
    beside = Path(sys.executable).with_name("luigid")
    if beside.exists():
        return [str(beside)]
    if importlib.util.find_spec("luigi") is None:
        raise UserError("luigi is not installed", hint="pip install luigi")
    return [sys.executable, "-c", "import sys; from luigi.cmdline import luigid; sys.exit(luigid())"]


def luigid_command(folder: Path, host: str, port: int) -> list[str]:
    return [
        *luigid_executable(),
        "--address",
        host,
        "--port",
        str(port),
        "--state-path",
        str(folder / STATE_NAME),
        "--logdir",
        str(folder / "logs"),
    ]


def luigid_env(config: Path) -> dict[str, str]:
    return {**os.environ, "LUIGI_CONFIG_PATH": str(config)}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_luigid(store: Store, host: str, port: int, settings: LuigidSettings, *, announce: bool = True) -> int:
    """Run luigid in the foreground until it stops (Ctrl-C); return its exit code."""
    import signal
    import subprocess

    folder = luigid_dir(store)
    config = write_config(folder, settings)
    if not is_loopback(host):
        print(NO_AUTH_WARNING.format(host=host, port=port), file=sys.stderr, flush=True)
    if announce:
        where = "localhost" if host in ("127.0.0.1", "::1") else host
        print(
            f"luigid on http://{host}:{port} (visualiser http://{where}:{port}/static/visualiser/index.html); "
            f"state, logs and config in {folder}",
            flush=True,
        )
    from nemoflow.executors.local import die_with_parent

    proc = subprocess.Popen(  # luigid goes with us, even when we are killed -9 (SIGTERM: it saves its state)
        luigid_command(folder, host, port),
        cwd=folder,
        env=luigid_env(config),
        preexec_fn=functools.partial(die_with_parent, signal.SIGTERM),
    )

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM (kill, systemd, a test's terminate) stops luigid as Ctrl-C does, not leave it orphaned
    main = threading.current_thread() is threading.main_thread()  # only there may handlers change
    previous = signal.signal(signal.SIGTERM, interrupt) if main else None
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)  # luigid writes its state file on SIGTERM
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def check_reachable(url: str, timeout: float = 5.0) -> None:
    """Raise a UserError when no luigi scheduler answers at ``url``."""
    probe = url.rstrip("/") + "/api/worker_list"
    try:
        with urllib.request.urlopen(probe, timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UserError(
            f"no luigi scheduler answers at {url} ({exc})", hint="start one with `nemoflow scheduler`"
        ) from exc
