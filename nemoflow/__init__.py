"""nemoflow: a content-addressed DAG build system for ML experiments, on luigi.

Public names are imported lazily, so ``import nemoflow`` and ``nemoflow --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "nemoflow.config",
    "Partial": "nemoflow.config",
    "Script": "nemoflow.config",
    "build": "nemoflow.config",
    "partial": "nemoflow.config",
    "config": "nemoflow.config",
    "File": "nemoflow.refs",
    "walk": "nemoflow.treeops",
    "broadcast": "nemoflow.treeops",
    "diff": "nemoflow.treeops",
    "sweep": "nemoflow.sweeps",
    "Experiment": "nemoflow.experiment",
    "Plugin": "nemoflow.experiment",
    "load_pipeline": "nemoflow.pipeline_file",
    "depends_on": "nemoflow.fingerprint",
    "Reason": "nemoflow.plan",
    "make_plan": "nemoflow.plan",
    "BuildResult": "nemoflow.results",
    "StepOutcome": "nemoflow.results",
    "output_dir": "nemoflow.run_step",
    "log_metrics": "nemoflow.run_step",
    "build_experiment": "nemoflow.scheduler",
    "run": "nemoflow.api",
    "LocalExecutor": "nemoflow.executors.local",
    "Executor": "nemoflow.executors.base",
    "DockerExecutor": "nemoflow.executors.docker",
    "SlurmExecutor": "nemoflow.executors.slurm",
    "LocalTunnel": "nemoflow.executors.tunnels",
    "SSHTunnel": "nemoflow.executors.tunnels",
    "GitArchivePackager": "nemoflow.executors.packagers",
    "PatternPackager": "nemoflow.executors.packagers",
    "HybridPackager": "nemoflow.executors.packagers",
    "Store": "nemoflow.store",
    "Ledger": "nemoflow.ledger",
    "audit": "nemoflow.audit",
    "UserError": "nemoflow.errors",
    "ConfigError": "nemoflow.errors",
    "PipelineError": "nemoflow.errors",
    "StepFailed": "nemoflow.errors",
    "BuildFailed": "nemoflow.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nemoflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from nemoflow.api import run
    from nemoflow.audit import audit
    from nemoflow.config import Config, Partial, Script, build, config, partial
    from nemoflow.errors import BuildFailed, ConfigError, PipelineError, StepFailed, UserError
    from nemoflow.executors.base import Executor
    from nemoflow.executors.docker import DockerExecutor
    from nemoflow.executors.local import LocalExecutor
    from nemoflow.executors.packagers import GitArchivePackager, HybridPackager, PatternPackager
    from nemoflow.executors.slurm import SlurmExecutor
    from nemoflow.executors.tunnels import LocalTunnel, SSHTunnel
    from nemoflow.experiment import Experiment, Plugin
    from nemoflow.fingerprint import depends_on
    from nemoflow.ledger import Ledger
    from nemoflow.pipeline_file import load_pipeline
    from nemoflow.plan import Reason, make_plan
    from nemoflow.refs import File
    from nemoflow.results import BuildResult, StepOutcome
    from nemoflow.run_step import log_metrics, output_dir
    from nemoflow.scheduler import build_experiment
    from nemoflow.store import Store
    from nemoflow.sweeps import sweep
    from nemoflow.treeops import broadcast, diff, walk
