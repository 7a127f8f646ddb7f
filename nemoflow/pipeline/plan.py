"""Experiment -> Plan: a key and a reason for every step, in dependency order. No luigi here."""

from __future__ import annotations

import copy
import enum
import functools
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemoflow.configs.checks import check_builds
from nemoflow.configs.core import Buildable, Config, Script, missing_arguments
from nemoflow.configs.refs import File, StepOutput, StepResult
from nemoflow.configs.serialize import canonical_json, import_path, to_data
from nemoflow.configs.treeops import nodes, path_of
from nemoflow.errors import ConfigError, PipelineError, did_you_mean
from nemoflow.pipeline.code_index import ModuleIndexCache
from nemoflow.pipeline.experiment import Experiment, Plugin, Step
from nemoflow.pipeline.fingerprint import Fingerprinter
from nemoflow.pipeline.keys import KEY_VERSION, step_key
from nemoflow.pipeline.script_code import script_parts
from nemoflow.pipeline.why import CODE_KINDS, Change, changes
from nemoflow.store.hashing import FileHashCache, sha256_text
from nemoflow.store.targets import Store, printable_name


class Reason(enum.StrEnum):
    """Why a step will run, or that it will not."""

    NEW_STEP = "new step"
    NEW_CONFIG = "new config"
    CODE_CHANGED = "code changed"
    PACKAGE_CHANGED = "package changed"
    INPUT_CHANGED = "input changed"
    SALT_CHANGED = "salt changed"
    UPSTREAM_CHANGED = "upstream changed"
    OUTPUT_MISSING = "output missing"
    TARGET_DAMAGED = "target damaged"  # published, but a file (or the manifest) changed on disk since
    FORCED = "forced"
    UP_TO_DATE = "up to date"

    def __str__(self) -> str:
        return self.value


CODE_CACHE = "code.json"  # parsed module files, under the store's .cache/
_UP_TO_DATE = Reason.UP_TO_DATE  # looked up once: enum member access is slow on hot paths
_REASON_OF_CHANGE = {
    "forced": Reason.FORCED,
    "new step": Reason.NEW_STEP,
    "key recipe": Reason.CODE_CHANGED,
    **{kind: Reason.CODE_CHANGED for kind in CODE_KINDS},
    "package": Reason.PACKAGE_CHANGED,
    "kind": Reason.NEW_CONFIG,
    "config": Reason.NEW_CONFIG,
    "input": Reason.INPUT_CHANGED,
    "salt": Reason.SALT_CHANGED,
    "upstream": Reason.UPSTREAM_CHANGED,
    "output missing": Reason.OUTPUT_MISSING,
    "damaged": Reason.TARGET_DAMAGED,
}


@dataclass
class PlannedStep:
    """A step with its key, what the key was made of, and why it runs (or not)."""

    name: str
    key: str
    kind: str
    task: Buildable[Any] | Script
    config: Any  # canonical data of the task
    code: str
    upstream: dict[str, str]  # upstream step name -> key
    files: dict[str, str]  # input path as written -> sha256
    executor: Any
    code_parts: dict[str, str] = field(
        default_factory=dict
    )  # part -> digest or value (see nemoflow.pipeline.fingerprint)
    reason: Reason = Reason.OUTPUT_MISSING
    why: list[Change] = field(default_factory=list)  # what differs from the step's latest target (when it runs)
    after: list[str] = field(default_factory=list)  # order only (``sequential``): not part of the key
    outputs: set[str] = field(default_factory=set)  # files other steps read (``h.output(...)``): it must write them

    @property
    def runs(self) -> bool:
        return self.reason is not _UP_TO_DATE


def executor_name(step: PlannedStep) -> str:
    """The registry name of the step's executor; a step without one runs on ``local``."""
    return step.executor.name if step.executor is not None else "local"


@dataclass
class Plan:
    """The planned steps of an experiment, in an order where upstream comes first."""

    experiment: Experiment
    store: Store
    steps: dict[str, PlannedStep] = field(default_factory=dict)
    workdir: Path = field(default_factory=Path.cwd)
    salt: str = ""
    sequential: bool = False
    file_hashes: FileHashCache = field(default_factory=FileHashCache)
    module_indexes: ModuleIndexCache = field(default_factory=ModuleIndexCache)

    def save_caches(self) -> None:
        """Keep the file hashes and parsed module files for the next plan (once the store exists)."""
        if self.store.root.exists():
            self.store.save_file_hash_cache(self.file_hashes)
            if self.module_indexes.changed:
                self.store.write_cache(CODE_CACHE, self.module_indexes.entries)
            self.store.save_check_cache()
            self.file_hashes.changed = self.module_indexes.changed = False

    @functools.cached_property
    def by_key(self) -> dict[str, PlannedStep]:
        return {step.key: step for step in self.steps.values()}

    def to_run(self) -> list[PlannedStep]:
        return [s for s in self.steps.values() if s.runs]

    def __iter__(self) -> Any:
        return iter(self.steps.values())

    def __len__(self) -> int:
        return len(self.steps)


def make_plan(
    exp: Experiment,
    store: Store,
    *,
    force: Iterable[str] = (),
    until: Iterable[str] = (),
    workdir: str | os.PathLike[str] | None = None,
    salt: str = "",
    plugins: Iterable[Plugin] = (),
    sequential: bool = False,
    default_executor: Callable[[], Any] | None = None,
) -> Plan:
    """Key every step of ``exp`` and say why each would run.

    Args:
        force: step names to rebuild even when up to date.
        until: build only these steps and what they depend on.
        workdir: where relative input paths are read from (default: the current directory).
        salt: a version string mixed into every key.
        plugins: applied to every step, after ``exp.plugins`` and before the step's own.
        sequential: run the steps one after another in the order they were added (order-only
            edges in ``PlannedStep.after``; keys do not change).
        default_executor: makes the executor handed to plugins of a step that has none.

    Raises:
        PipelineError: a cycle, a reference to an unknown or foreign step, an unknown step
            name in ``force``/``until``, a missing input file, a missing argument, or, with
            ``sequential``, a step added before a step it depends on.
    """
    root = Path(workdir or os.getcwd()).absolute()
    steps = apply_plugins(exp, plugins, default_executor)
    scans = {name: _scan(exp, step) for name, step in steps.items()}
    for name, step in steps.items():  # dataclass/pydantic validation rules fail here, before anything launches
        check_builds(step.task, name)
    edges = {name: scan.upstream for name, scan in scans.items()}
    order = _topological(edges)
    wanted = _ancestors(edges, _known(exp, until, "--until")) if until else None
    forced = set(_known(exp, force, "--force"))
    cache = store.file_hash_cache()
    indexes = ModuleIndexCache(store.read_cache(CODE_CACHE))
    code = _CodeContext(Fingerprinter(root, cache, indexes, packages=exp.package_versions), {})
    plan = Plan(exp, store, workdir=root, salt=salt, sequential=sequential, file_hashes=cache, module_indexes=indexes)
    verified: set[str] = set()  # up-to-date steps whose outputs were hashed because a step that runs reads them
    for name in order:
        if wanted is not None and name not in wanted:
            continue
        upstream = {up: plan.steps[up].key for up in sorted(edges[name])}
        planned = _plan_step(steps[name], scans[name], upstream, root, cache, salt, code)
        state = None if name in forced else store.check(name, planned.key)
        if state is not None and state.damage:
            _damaged(planned, state.damage)
        elif state is None or not state.exists:
            planned.why = _changes(planned, store, salt, forced=name in forced)
            planned.reason = _REASON_OF_CHANGE.get(planned.why[0].kind, Reason.OUTPUT_MISSING)
        else:
            planned.reason = _UP_TO_DATE
        plan.steps[name] = planned
        for up, path in scans[name].outputs:
            plan.steps[up].outputs.add(path)
        if planned.runs:
            _verify_upstream(plan, planned, verified)
    if sequential:
        _chain_in_added_order(plan, list(exp.steps))
    plan.save_caches()
    return plan


@dataclass
class _CodeContext:
    """What keys the code of a plan's steps: one fingerprinter, and the packagers' archive digests."""

    fingerprinter: Fingerprinter
    digests: dict[str, str]  # packager -> its archive digest (when a packager is the code fingerprint)
    known: dict[Any, tuple[dict[str, str], str]] = field(default_factory=dict)

    def of(self, step: Step, scan: _Scan, root: Path) -> tuple[dict[str, str], str]:
        """A step's code parts and their hash; steps of the same targets share one (a sweep of 10,000 pays once)."""
        task = step.task
        memo = None if isinstance(task, Script) else (task.__fn_or_cls__, frozenset(scan.targets), step.declared)
        try:
            found = self.known.get(memo) if memo is not None else None
        except TypeError:  # an unhashable target or declaration: no sharing
            memo = found = None
        if found is None:
            parts = _code_parts(step, scan, root, self.fingerprinter)
            found = (parts, sha256_text(canonical_json(parts)))
            if memo is not None:
                self.known[memo] = found
        return found


def apply_plugins(
    exp: Experiment, plugins: Iterable[Plugin] = (), default_executor: Callable[[], Any] | None = None
) -> dict[str, Step]:
    """The experiment's steps as plugins leave them: a step with plugins gets copies of its task and executor.

    Plugins apply in this order: ``exp.plugins``, ``plugins``, the step's own.
    """
    extra = list(plugins)
    steps = {}
    for name, step in exp.steps.items():
        step_plugins = [*exp.plugins, *extra, *step.plugins]
        if step_plugins:
            executor = step.executor
            if executor is None and default_executor is not None:
                executor = default_executor()
            step = Step(
                step.name,
                copy.deepcopy(step.task),
                copy.deepcopy(executor),
                step.dependencies,
                step.plugins,
                step.declared,
            )
            for plugin in step_plugins:
                plugin.setup(step.task, step.executor)
        steps[name] = step
    return steps


def _chain_in_added_order(plan: Plan, added: list[str]) -> None:
    """Order the plan as the steps were added, each step that runs after the previous one that runs.

    Raises:
        PipelineError: a step depends on a step added after it.
    """
    names = [name for name in added if name in plan.steps]
    position = {name: i for i, name in enumerate(names)}
    previous = None
    for i, name in enumerate(names):
        step = plan.steps[name]
        later = [up for up in step.upstream if position[up] > i]
        if later:
            raise PipelineError(
                f"sequential: step {name!r} depends on {later[0]!r}, which is added after it",
                hint="add the steps in dependency order, or run without sequential=True",
            )
        if step.runs:
            step.after = [previous] if previous is not None else []
            previous = name
    plan.steps = {name: plan.steps[name] for name in names}


@dataclass
class _Scan:
    """What one walk over a step's task finds."""

    upstream: set[str]
    files: list[tuple[str, File]]  # (path as written, the File, to locate it in an error)
    targets: set[Any]
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (step, file) of every ``h.output(file)``


def _scan(exp: Experiment, step: Step) -> _Scan:
    """Walk a step's task once: its step references, input files and config targets.

    Raises:
        PipelineError: a reference to a foreign or unknown step, or a config (or the step's
            own partial) with a required argument unset.
    """
    found = _Scan(set(step.dependencies), [], set())
    for node in nodes(step.task):  # paths are worked out only for an error
        if isinstance(node, (StepOutput, StepResult)):
            found.upstream.add(_own_step(exp, node, lambda n=node: path_of(step.task, n, step.name)))
            if isinstance(node, StepOutput):
                found.outputs.append((node.step.name, node.path))
        elif isinstance(node, File):
            found.files.append((node.path, node))
        elif isinstance(node, Buildable):
            if isinstance(node, Config) or node is step.task:
                missing = missing_arguments(node)
                if missing:
                    where = path_of(step.task, node, step.name)
                    raise PipelineError(f"missing required argument(s): {', '.join(missing)}", where=where)
            found.targets.add(node.__fn_or_cls__)
    return found


def _own_step(exp: Experiment, ref: StepOutput | StepResult, where: Callable[[], str]) -> str:
    ref_step = ref.step
    owner = getattr(ref_step, "experiment", None)
    if owner is not exp:
        raise PipelineError(
            f"refers to step {ref_step.name!r} of experiment {getattr(owner, 'name', '?')!r}, not of {exp.name!r}",
            where=where(),
            hint="add that step to this experiment, or pass its output file as a nemoflow.File",
        )
    if ref_step.name not in exp.steps:
        raise PipelineError(f"refers to step {ref_step.name!r}, which is not in the experiment", where=where())
    return ref_step.name


def _topological(edges: dict[str, set[str]]) -> list[str]:
    """Kahn's algorithm in insertion order; a cycle is reported with its path."""
    waiting = {name: len(ups) for name, ups in edges.items()}
    downstream: dict[str, list[str]] = {name: [] for name in edges}
    for name, ups in edges.items():
        for up in ups:
            downstream[up].append(name)
    ready = deque(name for name, n in waiting.items() if n == 0)
    order = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for down in downstream[name]:
            waiting[down] -= 1
            if waiting[down] == 0:
                ready.append(down)
    if len(order) < len(edges):
        raise PipelineError(
            f"dependency cycle: {' -> '.join(_find_cycle(edges, set(order)))}", hint="remove one of these references"
        )
    return order


def _find_cycle(edges: dict[str, set[str]], done: set[str]) -> list[str]:
    start = next(name for name in edges if name not in done)
    seen: dict[str, int] = {}
    path = []
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(up for up in sorted(edges[node]) if up not in done)
    cycle = [*path[seen[node] :], node]
    return list(reversed(cycle))


def _known(exp: Experiment, names: Iterable[str], option: str) -> list[str]:
    names = list(names)
    for name in names:
        if name not in exp.steps:
            raise PipelineError(f"{option}: no step named {name!r}", hint=did_you_mean(name, exp.steps))
    return names


def _ancestors(edges: dict[str, set[str]], roots: list[str]) -> set[str]:
    found: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name not in found:
            found.add(name)
            stack.extend(edges[name])
    return found


def _plan_step(
    step: Step,
    scan: _Scan,
    upstream: dict[str, str],
    root: Path,
    cache: FileHashCache,
    salt: str,
    code_context: _CodeContext,
) -> PlannedStep:
    task = step.task
    files = {
        written: _hash_input(written, root, cache, where=lambda f=file: path_of(task, f, step.name))
        for written, file in scan.files
    }
    try:
        config = to_data(task)
    except ConfigError as exc:
        raise PipelineError(
            exc.message, where=f"{step.name}: {exc.path}" if exc.path else step.name, hint=exc.hint
        ) from None
    packager = getattr(step.executor, "packager", None)
    if isinstance(task, Script):
        kind = f"script:{task.entrypoint}"
    else:
        kind = import_path(task.__fn_or_cls__)
    if packager is not None and getattr(packager, "fingerprint", False):  # the user picked the archive's digest
        parts = {"archive:packager": _package_digest(packager, root, code_context.digests)}
        code = sha256_text(canonical_json(parts))
    else:
        parts, code = code_context.of(step, scan, root)
    key = step_key(name=step.name, kind=kind, config=config, code=code, upstream=upstream, files=files, salt=salt)
    return PlannedStep(step.name, key, kind, task, config, code, upstream, files, step.executor, parts)


def _code_parts(step: Step, scan: _Scan, root: Path, fingerprinter: Fingerprinter) -> dict[str, str]:
    """The code parts of a step: what its targets reach, its script, and what it declares by hand.

    Raises:
        PipelineError: a script or a declared file is missing.
    """
    task = step.task
    try:
        if isinstance(task, Script):
            parts = _script_parts(task, root, step.name, fingerprinter)
            parts.update(fingerprinter.parts(scan.targets, step.declared))
            return dict(sorted(parts.items()))
        return fingerprinter.parts([task.__fn_or_cls__, *scan.targets], step.declared)
    except FileNotFoundError as exc:
        raise PipelineError(
            f"declared file {exc.args[0]!r} not found (looked in {root})",
            where=step.name,
            hint="extra_files= and nemoflow.depends_on(files=...) name files relative to the build's directory",
        ) from None


def _package_digest(packager: Any, root: Path, digests: dict[str, str]) -> str:
    """The digest of the code archive ``packager`` makes of ``root``: made once per packager in a plan."""
    marker = packager.model_dump_json()
    if marker not in digests:
        digests[marker] = packager.digest(root)
    return digests[marker]


def _hash_input(path: str, root: Path, cache: FileHashCache, *, where: Callable[[], str]) -> str:
    full = path if os.path.isabs(path) else os.path.join(root, path)
    try:
        return cache.sha256(full)
    except FileNotFoundError:
        raise PipelineError(f"input file {path!r} not found (looked for {full})", where=where()) from None
    except IsADirectoryError:
        raise PipelineError(f"input {path!r} is a folder; nemoflow.File names one file", where=where()) from None


def _script_parts(script: Script, root: Path, where: str, fingerprinter: Fingerprinter) -> dict[str, str]:
    if script.inline is not None:
        return {"script:<inline>": sha256_text(script.inline)}
    if script.m:
        return script_parts(
            _module_file(script.path or "", root, where), root, fingerprinter.indexes, packages=fingerprinter.packages
        )
    full = Path(script.path) if os.path.isabs(script.path or "") else root / (script.path or "")
    if not full.is_file():
        raise PipelineError(f"script {script.path!r} not found (looked for {full})", where=f"{where}.path")
    return script_parts(full, root, fingerprinter.indexes, packages=fingerprinter.packages)


def _module_file(module: str, root: Path, where: str) -> Path:
    """The source file of ``Script(module, m=True)``, found as ``python -m`` finds it from the build's folder."""
    import importlib.util

    sys.path.insert(0, str(root))
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise PipelineError(f"module script {module!r} cannot be found: {exc}", where=f"{where}.path") from None
    finally:
        sys.path.remove(str(root))
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        raise PipelineError(
            f"module script {module!r} not found from {root}",
            where=f"{where}.path",
            hint="m=True takes a module name: pkg.train",
        )
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        main = Path(spec.origin).with_name("__main__.py")
        return main if main.is_file() else Path(spec.origin)
    return Path(spec.origin)


def _damaged(step: PlannedStep, damage: str) -> None:
    """``step``'s target is damaged: it runs again, saying why (its run first moves the target under ``.corrupt/``)."""
    step.why = [Change("damaged", damage)]
    step.reason = Reason.TARGET_DAMAGED


def _verify_upstream(plan: Plan, step: PlannedStep, verified: set[str]) -> None:
    """Hash the outputs of the up-to-date targets ``step`` reads; a damaged one is rebuilt."""
    for up in step.upstream:
        planned = plan.steps[up]
        if planned.runs or up in verified:
            continue
        verified.add(up)
        try:
            mismatches = plan.store.verify(up, planned.key)
        except ValueError as exc:  # the manifest went bad since it was checked
            _damaged(planned, f"manifest unreadable: {exc}")
            continue
        if mismatches:
            first = printable_name(mismatches[0].path)
            what = "output gone" if mismatches[0].actual is None else "output changed on disk"
            _damaged(planned, f"{what}: {first}")


def _changes(step: PlannedStep, store: Store, salt: str, *, forced: bool) -> list[Change]:
    """What differs between ``step`` and the latest target of a step of its name."""
    return changes(
        name=step.name,
        config=step.config,
        code_parts=step.code_parts,
        code=step.code,
        kind=step.kind,
        inputs=step.files,
        upstream=step.upstream,
        salt=salt,
        key_version=KEY_VERSION,
        previous=None if forced else store.latest_manifest(step.name),
        forced=forced,
    )
