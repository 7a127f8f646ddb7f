"""The layering rule, checked on every import statement in the package: folders, in order, and third-party homes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nemoflow"

# Data flows down this list; a module imports only from its own folder and the folders above it.
# ``errors`` and the entry modules at the top of the package are not folders: errors.py is imported by
# all, ``__init__.py`` (lazy public names) and ``run_step.py`` (the job command) may import anything.
LAYERS = ["errors", "configs", "store", "pipeline", "record", "executors", "luigi", "engine", "runs", "ray", "cli"]
ENTRY_MODULES = {"__init__", "run_step"}
# Documented exceptions, each inside a function only (see the folders' __init__ docstrings):
# NeMo Run's `exp.run()`, `from_id`, `status`, `logs`, ... call into runs/; `@nemoflow.partial(executor=...)`
# makes a runs.launch.EngineFunction.
ALLOWED_UPWARD = {("pipeline", "runs"), ("configs", "runs")}

THIRD_PARTY_HOMES = {
    "luigi": {"luigi/tasks", "luigi/handout", "luigi/luigid"},
    "rich": {"cli/render"},
    "rich_argparse": {"cli/parser"},  # help formatting only
    "sqlite_utils": {"record/ledger"},
    "fabric": {"executors/tunnels"},
}
# The optional SDKs (extras), each imported only inside functions of its backend's files.
SDKS_INSIDE_FUNCTIONS = {
    "docker": {"executors/docker"},
    "ray": {"executors/ray", "ray/local", "ray/jobs"},
    "kubernetes": {"executors/kube", "executors/kubernetes", "executors/kuberay", "ray/kuberay"},
    "sky": {"executors/skypilot"},
    "leptonai": {"executors/lepton"},
}


def _modules() -> dict[str, Path]:
    return {str(p.relative_to(PACKAGE).with_suffix("")).removesuffix("/__init__"): p for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> str:
    return module.split("/")[0]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, imported at module level?) for every import in a file.

    Imports under ``if TYPE_CHECKING:`` run nothing and are left out: a folder may name a type from below.
    """
    tree = ast.parse(path.read_text())
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.extend((alias.name, id(node) in top_level) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
    return found


def test_every_module_lives_in_a_layer_folder() -> None:
    stray = {m for m in _modules() if _layer(m) not in LAYERS and m not in ENTRY_MODULES}
    assert not stray, f"put these modules into one of the folders {LAYERS}: {stray}"
    assert {_layer(m) for m in _modules()} >= set(LAYERS), "every layer is a folder of the package"


def test_folders_import_only_from_their_own_folder_and_those_above() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    violations = []
    for module, path in _modules().items():
        if module in ENTRY_MODULES:
            continue
        mine = _layer(module)
        for imported, top_level in _imports(path):
            if not imported.startswith("nemoflow.") or imported == "nemoflow":
                continue
            target = imported.removeprefix("nemoflow.").replace(".", "/")
            if target in ENTRY_MODULES:
                violations.append(f"{module} imports {imported} (an entry module, not a layer)")
                continue
            theirs = _layer(target)
            if theirs == mine or rank[theirs] < rank[mine]:
                continue
            if (mine, theirs) in ALLOWED_UPWARD and not top_level:
                continue
            violations.append(f"{module} imports {imported}")
    assert not violations, violations


def test_no_import_cycle_between_modules_but_the_documented_facades() -> None:
    """Function-level imports count too: the only edges allowed to close a circle are ALLOWED_UPWARD's."""
    graph: dict[str, set[str]] = {}
    modules = _modules()
    for module, path in modules.items():
        deps = set()
        for imported, _ in _imports(path):
            if imported.startswith("nemoflow."):
                target = imported.removeprefix("nemoflow.").replace(".", "/")
                upward = (_layer(module), _layer(target)) in ALLOWED_UPWARD
                if target in modules and target != module and not upward:
                    deps.add(target)
        graph[module] = deps
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*trail[trail.index(dep) :], dep])}")
            if dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_heavy_and_service_libraries_stay_in_their_modules() -> None:
    violations = []
    for module, path in _modules().items():
        for imported, top_level in _imports(path):
            root = imported.split(".")[0]
            homes = THIRD_PARTY_HOMES.get(root)
            if homes is not None and module not in homes:
                violations.append(f"{module} imports {imported}")
            sdk_homes = SDKS_INSIDE_FUNCTIONS.get(root)
            if sdk_homes is not None and (module not in sdk_homes or top_level):
                violations.append(f"{module} imports {imported} (only inside functions of {sorted(sdk_homes)})")
    assert not violations, violations


def test_every_folder_says_what_it_holds_and_what_it_may_import() -> None:
    for layer in LAYERS[1:]:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text())) or ""
        assert "Lives here" in doc or layer in ("executors", "cli"), layer
        assert doc, f"nemoflow/{layer}/__init__.py needs a docstring"


def test_import_nemoflow_loads_no_heavy_library() -> None:
    code = (
        "import sys, nemoflow, nemoflow.cli.app; "
        "print(sorted(m for m in ('luigi', 'sqlite_utils', 'rich', 'pydantic', 'numpy', 'docker', 'ray', 'kubernetes', 'sky', 'leptonai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
