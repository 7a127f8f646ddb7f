"""Plot time against N (log-log), one line per tool and phase: ``python bench/plot.py RESULTS.json OUT.png``.

Standalone on purpose: it runs in the peers' venv, which has matplotlib (nemoflow does not depend on it).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"nemoflow": "tab:blue", "snakemake": "tab:green", "luigi": "tab:orange", "doit": "tab:red"}
STYLES = {"cold": ("-", "o"), "noop": (":", "s"), "incremental": ("--", "^")}
TITLES = {"cold": "cold", "noop": "no-op", "incremental": "incremental"}


def main(source: str, target: str) -> None:
    """Median seconds per (tool, phase) against N."""
    with open(source) as handle:
        results = json.load(handle)
    times: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for sample in results["matrix"]["samples"]:
        times[(sample["tool"], sample["phase"])][sample["n"]].append(sample["seconds"])
    fig, ax = plt.subplots(figsize=(11, 6), dpi=110)
    for tool in results["meta"]["tools"]:
        for phase, (style, marker) in STYLES.items():
            points = sorted((n, statistics.median(v)) for n, v in times.get((tool, phase), {}).items())
            if not points:
                continue
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                linestyle=style,
                marker=marker,
                color=COLORS.get(tool),
                label=f"{tool} {TITLES[phase]}",
            )
        for n, status in results["matrix"]["status"].get(tool, {}).items():
            if status == "over budget":
                ax.plot([int(n)], [results["meta"]["budget"]], marker="x", color=COLORS.get(tool), markersize=10)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (tasks in W(N); the build runs N + 1)")
    ax.set_ylabel("seconds, whole process (median)")
    runs = results["meta"]["runs"]
    ax.set_title(f"W(N): time against N ({runs} run{'s' if runs != 1 else ''} per point; x = over budget)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
