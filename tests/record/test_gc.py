"""`nemoflow gc`: targets no current pipeline reaches go; live ones and the ledger stay."""

from __future__ import annotations

from pathlib import Path

from helpers import copy_pipeline, last_json, nemoflow


def _targets(folder: Path) -> set[str]:
    return {str(p.parent.relative_to(folder / "targets")) for p in (folder / "targets").glob("*/*/nemoflow.json")}


def test_gc_removes_only_unreachable_targets(tmp_path: Path) -> None:
    pipeline = copy_pipeline("quickstart.py", tmp_path)
    nemoflow("build", "quickstart.py", "--direct", cwd=tmp_path, check=True)
    pipeline.write_text(pipeline.read_text().replace('"hidden_size": 4, "lr": 0.5', '"hidden_size": 4, "lr": 0.45'))
    nemoflow("build", "quickstart.py", "--direct", cwd=tmp_path, check=True)
    both = _targets(tmp_path)
    plan = last_json(nemoflow("build", "quickstart.py", "-n", "--json", cwd=tmp_path, check=True).stdout)
    live = {f"{s['name']}/{s['key']}" for s in plan["steps"]}
    stale = both - live
    assert {t.split("/")[0] for t in stale} == {"train-small", "evaluate-small", "report"}

    dry = last_json(nemoflow("gc", "quickstart.py", "-n", "--json", cwd=tmp_path, check=True).stdout)
    assert {str(Path(p).relative_to(tmp_path / "targets")) for p in dry["removed"]} == stale
    assert _targets(tmp_path) == both  # a dry run removes nothing

    nemoflow("gc", "quickstart.py", "--yes", cwd=tmp_path, check=True)
    assert _targets(tmp_path) == both - stale
    assert (tmp_path / "targets" / "ledger.db").exists()
    again = last_json(nemoflow("build", "quickstart.py", "--json", cwd=tmp_path, check=True).stdout)
    assert again["ran"] == []


def test_gc_clears_failed_attempts_unless_asked_to_keep_them(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text(
        "import nemoflow\n\ndef boom() -> None:\n    raise RuntimeError('x')\n\n"
        "exp = nemoflow.Experiment('f')\nexp.add(nemoflow.Partial(boom), name='boom')\n"
    )
    assert nemoflow("build", "f.py", cwd=tmp_path).returncode == 1
    assert (tmp_path / "targets" / ".failed" / "boom").is_dir()
    nemoflow("gc", "f.py", "--keep-failed", "--yes", cwd=tmp_path, check=True)
    assert (tmp_path / "targets" / ".failed" / "boom").is_dir()
    nemoflow("gc", "f.py", "--yes", cwd=tmp_path, check=True)
    assert not (tmp_path / "targets" / ".failed").exists()
