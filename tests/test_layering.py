"""The layering rule of DESIGN.md, checked on every import statement in the package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nemoflow"

# Data flows down this list; a module imports only from modules above it.
LAYERS = [
    "errors",
    "refs",
    "validation",
    "config",
    "decode",
    "serialize",
    "treeops",
    "sweeps",
    "hashing",
    "fingerprint",
    "why",
    "store",
    "experiment",
    "pipeline_file",
    "plan",
    "results",
    "provenance",
    "ledger_writer",
    "ledger",
    "progress",
    "audit",
    "status",
    "dag",
    "gc",
    "run_step",
    "executors",
    "recovery",
    "runner",
    "detached",
    "tasks",
    "luigi_driver",
    "scheduler",
    "central",
    "api",
    "catalog",
    "cli",
]
# Documented exceptions, all lazy (inside functions): NeMo Run's `exp.run()` and the other methods of a
# run (`from_id`, `status`, `logs`, ...) call down into api/catalog; `@nemoflow.partial(executor=...)`
# makes an api.EngineFunction.
ALLOWED_UPWARD = {("experiment", "api"), ("experiment", "catalog"), ("config", "api")}

THIRD_PARTY_HOMES = {
    "luigi": {"tasks", "luigi_driver"},
    "rich": {"cli/render"},
    "rich_argparse": {"cli/parser"},  # help formatting only
    "sqlite_utils": {"ledger"},
    "fabric": {"executors/tunnels"},
}
SDKS_INSIDE_FUNCTIONS = {
    "docker": "executors/docker",
    "ray": "executors/ray",
    "kubernetes": "executors/kubernetes",
    "sky": "executors/skypilot",
}


def _modules() -> dict[str, Path]:
    return {str(p.relative_to(PACKAGE).with_suffix("")).removesuffix("/__init__"): p for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> str:
    return module.split("/")[0] if module.split("/")[0] in ("executors", "cli") else module


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, imported at module level?) for every import in a file."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, id(node) in top_level) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
    return found


def test_every_module_is_in_the_layer_table() -> None:
    missing = {_layer(m) for m in _modules() if m != "__init__" and _layer(m) not in LAYERS}
    assert not missing, f"add these modules to LAYERS (and DESIGN.md): {missing}"


def test_modules_import_only_from_layers_above() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    violations = []
    for module, path in _modules().items():
        if module == "__init__":
            continue
        mine = _layer(module)
        for imported, _ in _imports(path):
            if not imported.startswith("nemoflow.") or imported == "nemoflow":
                continue
            theirs = _layer(imported.removeprefix("nemoflow.").replace(".", "/"))
            if theirs == mine or (mine, theirs) in ALLOWED_UPWARD:
                continue
            if rank[theirs] > rank[mine]:
                violations.append(f"{module} imports {imported}")
    assert not violations, violations


def test_heavy_and_service_libraries_stay_in_their_modules() -> None:
    violations = []
    for module, path in _modules().items():
        for imported, top_level in _imports(path):
            root = imported.split(".")[0]
            homes = THIRD_PARTY_HOMES.get(root)
            if homes is not None and module not in homes:
                violations.append(f"{module} imports {imported}")
            sdk_home = SDKS_INSIDE_FUNCTIONS.get(root)
            if sdk_home is not None and (module != sdk_home or top_level):
                violations.append(f"{module} imports {imported} (only inside functions of {sdk_home})")
    assert not violations, violations


def test_import_nemoflow_loads_no_heavy_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, nemoflow, nemoflow.cli.app; "
        "print(sorted(m for m in ('luigi', 'sqlite_utils', 'rich', 'pydantic', 'numpy', 'docker', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
