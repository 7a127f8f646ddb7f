"""Move a job's files to the far side of a tunnel and its outputs back: one archive each way per job."""

from __future__ import annotations

import io
import posixpath
import shlex
import tarfile
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

from nemoflow.executors.packagers import Package
from nemoflow.executors.tunnels import Tunnel

_UNPACKED: set[tuple[str, str]] = set()


def ensure_unpacked(tunnel: Tunnel, package: Package, remote_dir: str) -> None:
    """Unpack ``package`` into ``remote_dir`` on the far side unless it is there (checked once per process)."""
    marker = (tunnel.key, remote_dir)
    if marker in _UNPACKED:
        return
    quoted = shlex.quote(remote_dir)
    if not tunnel.run(f"test -d {quoted}", check=False).ok:
        upload = f"{remote_dir}.{uuid.uuid4().hex[:8]}.tar.gz"
        tunnel.put(package.path, upload)
        temp = shlex.quote(upload.removesuffix(".tar.gz"))
        tunnel.run(
            f"mkdir -p {temp} && tar -xzf {shlex.quote(upload)} -C {temp} && rm -f {shlex.quote(upload)}"
            f" && (mv -T {temp} {quoted} 2>/dev/null || rm -rf {temp})"  # another build unpacked it first: keep theirs
        )
    _UNPACKED.add(marker)


def send_bundle(
    tunnel: Tunnel,
    root: str,
    *,
    files: Mapping[str, bytes],
    folders: Mapping[str, str],
    stage_dir: Path,
    then: str = "",
) -> str:
    """Create ``root`` on the far side with ``files`` (name -> bytes) and ``folders`` (name -> local folder).

    One archive, one upload and one remote command (``then`` is appended to it). Returns its stdout.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=stage_dir, suffix=".tar.gz", delete=False) as handle:
        bundle = Path(handle.name)
        with tarfile.open(fileobj=handle, mode="w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            for name, folder in folders.items():
                tar.add(folder, arcname=name)
    try:
        upload = posixpath.join(posixpath.dirname(root), f".{posixpath.basename(root)}.bundle.tar.gz")
        tunnel.run(f"mkdir -p {shlex.quote(posixpath.dirname(root))}")
        tunnel.put(bundle, upload)
        command = f"mkdir -p {shlex.quote(root)} && tar -xzf {shlex.quote(upload)} -C {shlex.quote(root)}"
        command += f" && rm -f {shlex.quote(upload)}"
        return tunnel.run(f"{command} && {then}" if then else command).stdout
    finally:
        bundle.unlink(missing_ok=True)


def fetch_folder(tunnel: Tunnel, remote_dir: str, local_dir: Path, stage_dir: Path) -> None:
    """Copy the contents of ``remote_dir`` into ``local_dir`` (one archive, one download)."""
    archive = f"{remote_dir.rstrip('/')}.fetch.tar.gz"
    tunnel.run(f"tar -czf {shlex.quote(archive)} -C {shlex.quote(remote_dir)} .")
    stage_dir.mkdir(parents=True, exist_ok=True)
    local = stage_dir / f"fetch-{uuid.uuid4().hex[:12]}.tar.gz"
    try:
        tunnel.get(archive, local)
        tunnel.run(f"rm -f {shlex.quote(archive)}", check=False)
        local_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(local) as tar:
            tar.extractall(local_dir, filter="data")
    finally:
        local.unlink(missing_ok=True)


def fetch_file(tunnel: Tunnel, remote: str, local: Path) -> bool:
    """Copy one file back if it exists there; whether it did."""
    if not tunnel.run(f"test -f {shlex.quote(remote)}", check=False).ok:
        return False
    tunnel.get(remote, local)
    return True
