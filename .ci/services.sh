#!/usr/bin/env bash
# Real services for the executor integration tests (tests/integration/services.py reads what this writes):
#   sshd on 127.0.0.1:2222 (user nftest, key only), a single-node Slurm with full sacct (munge, MariaDB,
#   slurmdbd, slurmctld, slurmd), and a Docker engine on /var/run/docker.sock with the image nf-python:bookworm.
# Run as root on Debian 12: `sudo bash .ci/services.sh`. Idempotent: what is installed or running is kept.
# The services stay up after the script ends. See /var/lib/nemoflow-ci/services.json for what runs.
set -euo pipefail
umask 022
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" != 0 ]; then
    echo "services.sh: run as root (sudo bash .ci/services.sh)" >&2
    exit 1
fi

CI=/var/lib/nemoflow-ci
SSHD_DIR=$CI/sshd
DOCKER_DIR=$CI/docker
VENV=/opt/nemoflow-remote
IMAGE=nf-python:bookworm
SSH_PORT=2222
CLUSTER=nemoflow
PARTITION=debug
PACKAGES=(openssh-server munge slurm-wlm slurmdbd mariadb-server docker.io debootstrap python3-venv busybox-static python3-torch)
RAY_VENV=/opt/nemoflow-ray  # Ray for nftest: the Ray cluster that tests/raybackends start inside a Slurm job
RAY_VERSION=${NEMOFLOW_RAY_VERSION:-2.60.0}
TORCH_VENV=/opt/nemoflow-torch  # Debian's CPU torch (python3-torch) + nemoflow's step runtime: the torchrun test

log() { echo "services.sh: $*" >&2; }
die() { echo "services.sh: ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# alive PIDFILE: the process named in PIDFILE runs
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
# wait_for SECONDS CMD...: run CMD until it succeeds, at most SECONDS seconds
wait_for() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.3
    done
}
# write_if_changed FILE: stdin -> FILE, only when different; returns 0 when it wrote
write_if_changed() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
        return 1
    fi
    mv "$tmp" "$1"
    chmod 644 "$1"
    return 0
}
# stop_pidfile PIDFILE: end the process named in PIDFILE and wait for it
stop_pidfile() {
    alive "$1" || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    die "process $pid from $1 did not stop"
}

# --- packages -----------------------------------------------------------------------------------------------
t=$(now)
missing=()
for p in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
fi
echo "packages: $(took "$t")s (${#missing[@]} of ${#PACKAGES[@]} were missing)"

install -d -m 755 "$CI" "$SSHD_DIR" "$DOCKER_DIR"

# --- sshd ---------------------------------------------------------------------------------------------------
t=$(now)
if ! id nftest >/dev/null 2>&1; then
    useradd -m -s /bin/bash nftest
fi
usermod -p '*' nftest # useradd leaves the account locked; with UsePAM no, sshd would refuse it
[ -f "$CI/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C nemoflow-ci-host -f "$CI/host_ed25519"
[ -f "$CI/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C nemoflow-ci-client -f "$CI/client_ed25519"
chmod 600 "$CI/host_ed25519" "$CI/client_ed25519"
chmod 644 "$CI/host_ed25519.pub" "$CI/client_ed25519.pub"
install -d -m 700 -o nftest -g nftest /home/nftest/.ssh
install -m 600 -o nftest -g nftest "$CI/client_ed25519.pub" /home/nftest/.ssh/authorized_keys
echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$CI/host_ed25519.pub")" | write_if_changed "$CI/known_hosts" || true
sshd_changed=0
write_if_changed "$SSHD_DIR/sshd_config" <<EOF && sshd_changed=1 || true
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $CI/host_ed25519
PidFile $SSHD_DIR/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF
mkdir -p /run/sshd
chmod 755 /run/sshd
/usr/sbin/sshd -t -f "$SSHD_DIR/sshd_config"
if alive "$SSHD_DIR/sshd.pid"; then
    if [ "$sshd_changed" = 1 ]; then
        kill -HUP "$(cat "$SSHD_DIR/sshd.pid")"
        sleep 0.5
    fi
else
    /usr/sbin/sshd -f "$SSHD_DIR/sshd_config" -E "$SSHD_DIR/sshd.log" </dev/null >/dev/null 2>&1
fi
wait_for 10 port_open "$SSH_PORT" || { tail -n 20 "$SSHD_DIR/sshd.log" >&2; die "sshd does not answer on 127.0.0.1:$SSH_PORT"; }
echo "sshd: $(took "$t")s (127.0.0.1:$SSH_PORT, pid $(cat "$SSHD_DIR/sshd.pid"))"

# --- Python for remote steps (readable by nftest; the main Python under /root/.pyenv is not) ----------------
t=$(now)
if ! "$VENV/bin/python" -c "import pydantic, dill, yaml, numpy" >/dev/null 2>&1; then
    [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check pydantic dill pyyaml numpy
fi
chmod -R a+rX "$VENV"
runuser -u nftest -- "$VENV/bin/python" -c "import pydantic, dill, yaml, numpy" \
    || die "nftest cannot import the remote packages from $VENV"
echo "remote-python: $(took "$t")s ($VENV)"

t=$(now)
if ! "$TORCH_VENV/bin/python" -c "import torch, pydantic, dill" >/dev/null 2>&1; then
    [ -x "$TORCH_VENV/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$TORCH_VENV"
    "$TORCH_VENV/bin/pip" install -q --disable-pip-version-check pydantic dill
fi
chmod -R a+rX "$TORCH_VENV"
echo "torch-python: $(took "$t")s ($TORCH_VENV)"

t=$(now)
if ! "$RAY_VENV/bin/python" -c "import ray, ray.dashboard, pydantic, dill, yaml" >/dev/null 2>&1 \
    || [ "$("$RAY_VENV/bin/python" -c 'import ray; print(ray.__version__)')" != "$RAY_VERSION" ]; then
    [ -x "$RAY_VENV/bin/python" ] || /usr/bin/python3 -m venv "$RAY_VENV"
    "$RAY_VENV/bin/pip" install -q --disable-pip-version-check "ray[default]==$RAY_VERSION" pydantic dill pyyaml
fi
chmod -R a+rX "$RAY_VENV"
runuser -u nftest -- "$RAY_VENV/bin/ray" --version >/dev/null || die "nftest cannot run $RAY_VENV/bin/ray"
echo "ray-python: $(took "$t")s ($RAY_VENV, ray $RAY_VERSION)"

# --- Slurm (munge, MariaDB, slurmdbd, slurmctld, slurmd) ----------------------------------------------------
t=$(now)
slurm_tail() {
    for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/slurm/slurmdbd.log; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    return 0
}
# munge
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 600 /etc/munge/munge.key
mkdir -p /run/munge
chown munge:munge /run/munge
if ! alive /run/munge/munged.pid; then
    runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1
fi
wait_for 10 bash -c 'munge -n | unmunge' || die "munge does not work"

# MariaDB on 127.0.0.1 (and its unix socket)
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
if ! mariadb-admin ping >/dev/null 2>&1; then
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 \
        --pid-file=/run/mysqld/mariadbd.pid </dev/null >>"$CI/mariadbd.log" 2>&1 &
    wait_for 30 mariadb-admin ping || { tail -n 20 "$CI/mariadbd.log" >&2; die "MariaDB did not start"; }
fi
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

# configs
read -r cpus mem < <(slurmd -C | awk '/^NodeName=/ {
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    print v["CPUs"], v["RealMemory"] }')
[ -n "${cpus:-}" ] && [ -n "${mem:-}" ] || die "cannot read CPUs and RealMemory from slurmd -C"
[ "$mem" -gt 2000 ] && mem=2000
install -d -m 755 /etc/slurm /var/log/slurm
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
chown slurm:slurm /var/log/slurm
slurm_changed=0
write_if_changed /etc/slurm/slurm.conf <<EOF && slurm_changed=1 || true
# Written by nemoflow's .ci/services.sh: one node, full sacct through slurmdbd + MariaDB.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
NodeName=localhost NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE DefaultTime=00:10:00 State=UP
EOF
write_if_changed /etc/slurm/slurmdbd.conf <<EOF && slurm_changed=1 || true
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
chown slurm:slurm /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf
if [ "$slurm_changed" = 1 ]; then # a new config: restart what runs with the old one
    stop_pidfile /run/slurmd.pid
    stop_pidfile /run/slurmctld.pid
    stop_pidfile /run/slurmdbd.pid
fi

# slurmdbd, then the cluster, then slurmctld and slurmd
if ! alive /run/slurmdbd.pid; then
    slurmdbd </dev/null >/dev/null 2>&1
fi
wait_for 30 port_open 6819 || { slurm_tail; die "slurmdbd does not answer on port 6819"; }
if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
    out=$(sacctmgr -i add cluster "$CLUSTER" 2>&1) || echo "$out" | grep -qi "already exists" \
        || { echo "$out" >&2; die "sacctmgr add cluster failed"; }
fi
if ! alive /run/slurmctld.pid; then
    slurmctld </dev/null >/dev/null 2>&1
fi
if ! alive /run/slurmd.pid; then
    slurmd </dev/null >/dev/null 2>&1
fi
node_up() { sinfo -h -p "$PARTITION" -o %t 2>/dev/null | grep -Eqx 'idle|mix|mixed|alloc|allocated|comp'; }
if ! wait_for 30 node_up; then
    # a node left down or drained by an earlier run: resume it once, then wait again
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
    wait_for 10 node_up || { sinfo >&2 || true; slurm_tail; die "the Slurm node is not idle"; }
fi
sacct -n -X -S now-1minutes >/dev/null || { slurm_tail; die "sacct does not work"; }
echo "slurm: $(took "$t")s (cluster $CLUSTER, partition $PARTITION, node $(sinfo -h -p "$PARTITION" -o %t))"

# --- Docker ---------------------------------------------------------------------------------------------------
t=$(now)
docker_ok() { docker -H unix:///var/run/docker.sock info >/dev/null 2>&1; }
if ! docker_ok; then
    if alive "$DOCKER_DIR/dockerd.pid"; then
        stop_pidfile "$DOCKER_DIR/dockerd.pid"
    fi
    setsid dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
        --data-root "$DOCKER_DIR/root" --exec-root "$DOCKER_DIR/exec" --pidfile "$DOCKER_DIR/dockerd.pid" \
        -H unix:///var/run/docker.sock </dev/null >>"$DOCKER_DIR/dockerd.log" 2>&1 &
    wait_for 30 docker_ok || { tail -n 30 "$DOCKER_DIR/dockerd.log" >&2; die "dockerd did not start"; }
fi
echo "dockerd: $(took "$t")s (unix:///var/run/docker.sock)"

t=$(now)
debian_mirror() {
    # The Debian archive of apt's own sources (the entry for this release, not -security or -updates).
    /usr/bin/python3 - <<'PY'
import glob, re
codename = dict(l.strip().split("=", 1) for l in open("/etc/os-release") if "=" in l).get("VERSION_CODENAME", "").strip('"')
found = []
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb" and line[2] == codename:
            found.append(line[1])
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" in fields.get("types", "").split() and codename in fields.get("suites", "").split():
            found.extend(fields.get("uris", "").split())
print(found[0] if found else "")
PY
}
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || die "no Debian mirror for bookworm found in /etc/apt/sources.list{,.d/}"
    build=$(mktemp -d "$CI/image-build.XXXXXX")
    trap 'rm -rf "$build"' EXIT
    debootstrap --variant=minbase --include=python3 bookworm "$build/rootfs" "$mirror" >"$build/debootstrap.log" 2>&1 \
        || { tail -n 30 "$build/debootstrap.log" >&2; die "debootstrap from $mirror failed"; }
    dist="$build/rootfs/usr/local/lib/python3.11/dist-packages"
    mkdir -p "$dist"
    for entry in "$VENV"/lib/python3.11/site-packages/*; do
        case "$(basename "$entry")" in
            pip | pip-* | setuptools | setuptools-* | pkg_resources | _distutils_hack | distutils-precedence.pth | __pycache__) ;;
            *) cp -a "$entry" "$dist/" ;;
        esac
    done
    rm -rf "$build/rootfs/var/cache/apt/archives/"*.deb "$build/rootfs/var/lib/apt/lists/"*
    tar -C "$build/rootfs" -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$IMAGE" >/dev/null
    rm -rf "$build"
    trap - EXIT
    built="built from $mirror"
else
    built="already present"
fi
check=$(docker run --rm --network none "$IMAGE" python3 -c "import pydantic, dill, yaml, numpy; print('ok')") \
    || die "the image $IMAGE cannot import pydantic, dill, yaml, numpy"
[ "$check" = ok ] || die "the image $IMAGE printed '$check', not 'ok'"
echo "docker-image: $(took "$t")s ($IMAGE $built)"

# --- services.json ------------------------------------------------------------------------------------------
write_if_changed "$CI/services.json" <<EOF || true
{
  "sshd": {
    "host": "127.0.0.1",
    "port": $SSH_PORT,
    "user": "nftest",
    "identity": "$CI/client_ed25519",
    "known_hosts": "$CI/known_hosts",
    "pid_file": "$SSHD_DIR/sshd.pid"
  },
  "slurm": {
    "partition": "$PARTITION",
    "cluster": "$CLUSTER",
    "remote_python": "$VENV/bin/python",
    "torch_python": "$TORCH_VENV/bin/python",
    "ray_python": "$RAY_VENV/bin/python"
  },
  "docker": {
    "base_url": "unix:///var/run/docker.sock",
    "python_image": "$IMAGE"
  }
}
EOF
echo "services.json: $CI/services.json"
