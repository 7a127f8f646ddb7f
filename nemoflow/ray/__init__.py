"""NeMo Run's Ray surface: ``RayCluster`` and ``RayJob`` on a local Ray head, on Slurm and on KubeRay.

Lives here: cluster.py (``RayCluster``), job.py (``RayJob``), backend.py (what each backend implements,
and which backend an executor selects), state.py (clusters remembered by name), local.py (a head on this
machine), slurm.py (a cluster inside an sbatch job), kuberay.py (RayCluster / RayJob custom resources),
jobs.py (Ray's job-submission SDK, shared by the backends that talk to a dashboard).
Imports the executors and the folders above them; nothing in the package imports it but ``__init__``.
The Ray and Kubernetes SDKs are imported only inside functions of local.py, jobs.py and kuberay.py.
"""

from __future__ import annotations

from nemoflow.ray.cluster import RayCluster
from nemoflow.ray.job import RayJob

__all__ = ["RayCluster", "RayJob"]
