"""nemoflow: a content-addressed DAG build system for ML experiments, on luigi.

Public names are imported lazily, so ``import nemoflow`` and ``nemoflow --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "nemoflow.configs.core",
    "Partial": "nemoflow.configs.core",
    "Script": "nemoflow.configs.core",
    "build": "nemoflow.configs.core",
    "partial": "nemoflow.configs.core",
    "config": "nemoflow.configs.core",
    "File": "nemoflow.configs.refs",
    "autoconvert": "nemoflow.configs.autoconvert",
    "OptionalDefaultConfig": "nemoflow.configs.core",
    "OptionalDefaultPartial": "nemoflow.configs.core",
    "set_value": "nemoflow.configs.paths",
    "walk": "nemoflow.configs.treeops",
    "broadcast": "nemoflow.configs.treeops",
    "diff": "nemoflow.configs.treeops",
    "sweep": "nemoflow.configs.sweeps",
    "Experiment": "nemoflow.pipeline.experiment",
    "Plugin": "nemoflow.pipeline.experiment",
    "load_pipeline": "nemoflow.pipeline.loading",
    "depends_on": "nemoflow.pipeline.fingerprint",
    "Reason": "nemoflow.pipeline.plan",
    "make_plan": "nemoflow.pipeline.plan",
    "BuildResult": "nemoflow.engine.results",
    "StepOutcome": "nemoflow.engine.results",
    "output_dir": "nemoflow.engine.step_runtime",
    "log_metrics": "nemoflow.engine.step_runtime",
    "build_experiment": "nemoflow.engine.build",
    "run": "nemoflow.runs.launch",
    "LocalExecutor": "nemoflow.executors.local",
    "Executor": "nemoflow.executors.base",
    "DockerExecutor": "nemoflow.executors.docker",
    "SlurmExecutor": "nemoflow.executors.slurm",
    "RayExecutor": "nemoflow.executors.ray",
    "KubeRayExecutor": "nemoflow.executors.kuberay",
    "KubeRayWorkerGroup": "nemoflow.executors.kuberay",
    "KubernetesExecutor": "nemoflow.executors.kubernetes",
    "DGXCloudExecutor": "nemoflow.executors.dgxcloud",
    "LeptonExecutor": "nemoflow.executors.lepton",
    "LocalTunnel": "nemoflow.executors.tunnels",
    "SSHTunnel": "nemoflow.executors.tunnels",
    "GitArchivePackager": "nemoflow.executors.packagers",
    "PatternPackager": "nemoflow.executors.packagers",
    "HybridPackager": "nemoflow.executors.packagers",
    "Packager": "nemoflow.executors.packagers",
    "ExecutorMacros": "nemoflow.executors.macros",
    "Torchrun": "nemoflow.executors.launchers",
    "import_executor": "nemoflow.executors.imported",
    "Store": "nemoflow.store.targets",
    "Ledger": "nemoflow.record.ledger",
    "audit": "nemoflow.record.audit",
    "UserError": "nemoflow.errors",
    "ConfigError": "nemoflow.errors",
    "PipelineError": "nemoflow.errors",
    "StepFailed": "nemoflow.errors",
    "BuildFailed": "nemoflow.errors",
}

# Subpackages reachable as attributes after a plain ``import nemoflow`` (``nemoflow.cli.entrypoint``,
# ``nemoflow.ray.RayCluster``), as NeMo Run's ``run.cli`` is.
_SUBPACKAGES = {"cli", "ray"}

__all__ = sorted({*_EXPORTS, *_SUBPACKAGES})


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"nemoflow.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nemoflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from nemoflow.configs.autoconvert import autoconvert
    from nemoflow.configs.core import (
        Config,
        OptionalDefaultConfig,
        OptionalDefaultPartial,
        Partial,
        Script,
        build,
        config,
        partial,
    )
    from nemoflow.configs.paths import set_value
    from nemoflow.configs.refs import File
    from nemoflow.configs.sweeps import sweep
    from nemoflow.configs.treeops import broadcast, diff, walk
    from nemoflow.engine.build import build_experiment
    from nemoflow.engine.results import BuildResult, StepOutcome
    from nemoflow.engine.step_runtime import log_metrics, output_dir
    from nemoflow.errors import BuildFailed, ConfigError, PipelineError, StepFailed, UserError
    from nemoflow.executors.base import Executor
    from nemoflow.executors.dgxcloud import DGXCloudExecutor
    from nemoflow.executors.docker import DockerExecutor
    from nemoflow.executors.imported import import_executor
    from nemoflow.executors.kuberay import KubeRayExecutor, KubeRayWorkerGroup
    from nemoflow.executors.kubernetes import KubernetesExecutor
    from nemoflow.executors.launchers import Torchrun
    from nemoflow.executors.lepton import LeptonExecutor
    from nemoflow.executors.local import LocalExecutor
    from nemoflow.executors.macros import ExecutorMacros
    from nemoflow.executors.packagers import GitArchivePackager, HybridPackager, Packager, PatternPackager
    from nemoflow.executors.ray import RayExecutor
    from nemoflow.executors.slurm import SlurmExecutor
    from nemoflow.executors.tunnels import LocalTunnel, SSHTunnel
    from nemoflow.pipeline.experiment import Experiment, Plugin
    from nemoflow.pipeline.fingerprint import depends_on
    from nemoflow.pipeline.loading import load_pipeline
    from nemoflow.pipeline.plan import Reason, make_plan
    from nemoflow.record.audit import audit
    from nemoflow.record.ledger import Ledger
    from nemoflow.runs.launch import run
    from nemoflow.store.targets import Store
