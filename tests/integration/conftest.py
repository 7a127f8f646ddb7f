"""Integration tests run real services; they share the helpers of the tests folder."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from services import docker_service, slurm_service, sshd_service  # noqa: F401  (session fixtures of .ci/services.sh)
