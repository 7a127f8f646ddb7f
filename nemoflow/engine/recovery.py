"""Put back what a killed build's ledger lost: the runs of targets it published.

A build commits its runs in batches (see :mod:`nemoflow.record.ledger_writer`); a SIGKILL can publish a
target whose run never reached the ledger, or whose end did not. Each target's manifest records
the run that made it, so the ledger is mended from the store the next time a build opens it.
"""

from __future__ import annotations

import json
from typing import Any

from nemoflow.executors import executor_from_data
from nemoflow.pipeline.plan import Reason
from nemoflow.record.ledger import Ledger
from nemoflow.store.targets import LOG, Store, process_alive


def recover_interrupted_builds(ledger: Ledger, store: Store) -> int:
    """Mend the ledger after builds whose process died while they ran; returns how many runs were put back.

    A build counts as dead when it is still marked running and its process (on this host) is gone.
    Its runs are restored from the manifests of the targets it published, and it is marked
    ``interrupted``. Costs one query when no build died.
    """
    restored = 0
    dead = [
        row
        for row in ledger.rows("select id, host, pid, options from experiments where status = 'running'")
        if not process_alive(row["host"], row["pid"])
    ]
    for build in dead:
        restored += _restore_runs(ledger, store, build)
        ledger.finish_experiment(build["id"], "interrupted")
    return restored


def _restore_runs(ledger: Ledger, store: Store, build: dict[str, Any]) -> int:
    experiment_id = build["id"]
    runs = list(ledger.rows("select id, status, environment_id from runs where experiment_id = ?", [experiment_id]))
    recorded = {row["id"]: row["status"] for row in runs}
    environment = runs[0]["environment_id"] if runs else None
    direct = bool(json.loads(build["options"] or "{}").get("direct"))
    rows, artifacts = [], []
    for member in ledger.experiment_steps(experiment_id):
        if member["reason"] == Reason.UP_TO_DATE:  # it did not run in that build
            continue
        manifest = store.read_manifest(member["name"], member["key"])
        if manifest is None or manifest.get("experiment_id") != experiment_id:
            continue
        if recorded.get(manifest["run_id"]) == "succeeded":
            continue
        rows.append(_run_row(manifest, build, member, environment, direct, store))
        artifacts += [(manifest["key"], f["path"], f["sha256"], f["size"]) for f in manifest["files"]]
    if rows:
        ledger.restore_runs(rows, artifacts)
    return len(rows)


def _run_row(
    manifest: dict[str, Any],
    build: dict[str, Any],
    member: dict[str, Any],
    environment: str | None,
    direct: bool,
    store: Store,
) -> dict[str, Any]:
    if direct and not manifest["kind"].startswith("script:"):
        executor = "direct"
    else:
        executor = executor_from_data(member["executor"]).name if member["executor"] else "local"
    published = manifest["published"]
    return {
        "id": manifest["run_id"],
        "experiment_id": build["id"],
        "key": manifest["key"],
        "step": manifest["step"],
        "reason": member["reason"],
        "executor": executor,
        "host": build["host"],
        "worker": f"{build['host']}:{build['pid']}",
        "pid": build["pid"],
        "status": "succeeded",
        "started": published - (manifest.get("seconds") or 0.0),
        "ended": published,
        "exit_code": 0,
        "log_path": str(store.target_dir(manifest["step"], manifest["key"]) / LOG),
        "environment_id": environment,
        "details": json.dumps({"recovered_from": "manifest"}),
    }
