#!/bin/bash
# A real SLURM cluster on this one host, to try batch scripts before a real cluster sees them
# (and for CI): slurmctld plus NODES slurmd daemons ("nodes" node1..nodeN, all on localhost).
#
#   sudo slurm/local-cluster.sh install     # Debian/Ubuntu packages: slurm, munge, PMIx
#   sudo slurm/local-cluster.sh start       # write the config, start munge and the daemons
#   slurm/local-cluster.sh status           # sinfo
#   sudo slurm/local-cluster.sh stop
#
# Environment: NODES (default 2), CPUS per node (default 16: more than this host has, so
# oversubscribed jobs fit), MPIRL_SLURM_DIR for state and logs (default /tmp/mpirl-slurm).
# Jobs run as root on a laptop or CI VM, so nothing needs a slurm user. It writes
# /etc/slurm/slurm.conf, and refuses to replace one it did not write.
set -euo pipefail

DIR="${MPIRL_SLURM_DIR:-/tmp/mpirl-slurm}"
NODES="${NODES:-2}"
CPUS="${CPUS:-16}"
CONF=/etc/slurm/slurm.conf
MARK="# written by mpirl slurm/local-cluster.sh"

install_packages() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
        libpmix-dev > /dev/null
}

write_config() {
    if [ -f "$CONF" ] && ! grep -q "^$MARK" "$CONF"; then
        echo "local-cluster: $CONF exists and was not written by this script; not touching it" >&2
        exit 1
    fi
    mkdir -p "$DIR"/{state,log,run} /etc/slurm
    cat > "$CONF" <<EOF
$MARK
ClusterName=mpirl-local
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool-%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
TmpFS=$DIR/tmp-%n
# accept the node sizes below although this host has fewer CPUs
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# a plain srun starts MPICH ranks as one world through PMI-2
MpiDefault=pmi2
ReturnToService=2
MinJobAge=3600
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
NodeName=node[1-$NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=17001-$((17000 + NODES)) CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    for n in $(seq 1 "$NODES"); do mkdir -p "$DIR/spool-node$n" "$DIR/tmp-node$n"; done
}

start() {
    command -v slurmctld > /dev/null || { echo "local-cluster: run '$0 install' first" >&2; exit 1; }
    stop quietly
    write_config
    if ! pgrep -x munged > /dev/null; then
        mkdir -p /run/munge && chown munge:munge /run/munge
        runuser -u munge -- munged --force
    fi
    slurmctld -c            # -c: a clean state, so nodes drained by an earlier config come back
    for n in $(seq 1 "$NODES"); do slurmd -N "node$n"; done
    for _ in $(seq 1 100); do
        if [ "$(sinfo -h -o '%t' 2> /dev/null | grep -c '^idle')" -ge 1 ] &&
           ! sinfo -h -o '%t' 2> /dev/null | grep -qv '^idle'; then
            sinfo
            return 0
        fi
        sleep 0.2
    done
    echo "local-cluster: the nodes did not come up; see $DIR/log/" >&2
    sinfo >&2 || true
    exit 1
}

stop() {
    pkill -x slurmd 2> /dev/null || true
    pkill -x slurmctld 2> /dev/null || true
    for _ in $(seq 1 50); do
        pgrep -x slurmd > /dev/null || pgrep -x slurmctld > /dev/null || break
        sleep 0.1
    done
    [ "${1:-}" = quietly ] || echo "local-cluster: stopped"
}

case "${1:-}" in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
