"""``python -m nemoflow.run_step JOB.json``: the command every step's job runs, here and on clusters.

The runtime itself is :mod:`nemoflow.engine.step_runtime`; this path stays fixed because jobs already
submitted to a cluster (and their sbatch scripts) name it.
"""

from __future__ import annotations

import sys

from nemoflow.engine.step_runtime import main

if __name__ == "__main__":
    sys.exit(main())
