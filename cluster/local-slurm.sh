#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, from nothing, with accounting (sacct) that works
# (or two nodes on this one machine, LOCAL_SLURM_NODES=2, for jobs that span nodes).
#
#   cluster/local-slurm.sh install            # apt-get the Debian slurm-wlm packages if missing (root)
#   cluster/local-slurm.sh up STATE_DIR       # start munged, MariaDB, slurmdbd, slurmctld, slurmd
#   cluster/local-slurm.sh status STATE_DIR   # which daemons run; the node's state
#   cluster/local-slurm.sh down STATE_DIR     # cancel jobs, stop every daemon by the PID in its PID file
#
# Everything (configuration, MUNGE key, database, spool, logs, PID files) lives in STATE_DIR.
# `up` prints one line on stdout, the variable to export (eval "$(cluster/local-slurm.sh up DIR)");
# progress goes to stderr. Both `up` and `down` can be run twice. Daemons are only ever stopped by
# the PIDs in STATE_DIR's own PID files, never by name. See cluster/README.md for the settings.
#
# Environment (optional): LOCAL_SLURM_PORT_BASE (6817: slurmctld, +1 slurmd, +2 slurmdbd, +3 MariaDB),
# LOCAL_SLURM_CLUSTER (cluster name, "genrm"), LOCAL_SLURM_ACCOUNT (account for jobs, "genrm"),
# LOCAL_SLURM_MEM_RESERVE_MB (memory kept back from the node's RealMemory, 512),
# LOCAL_SLURM_ETC_LINK (1: point /etc/slurm/slurm.conf at the generated file; 0: leave /etc alone),
# LOCAL_SLURM_NODES (1, or 2: two nodes on this host, each with one CPU and half the memory, each
# with its own slurmd; the second one listens on LOCAL_SLURM_PORT_BASE+4).
set -euo pipefail

# --- settings -----------------------------------------------------------------------------------
PORT_BASE=${LOCAL_SLURM_PORT_BASE:-6817}
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
SLURMD2_PORT=$((PORT_BASE + 4))
NODES=${LOCAL_SLURM_NODES:-1}
CLUSTER=${LOCAL_SLURM_CLUSTER:-genrm}
ACCOUNT=${LOCAL_SLURM_ACCOUNT:-genrm}
MEM_RESERVE_MB=${LOCAL_SLURM_MEM_RESERVE_MB:-512}
ETC_LINK=${LOCAL_SLURM_ETC_LINK:-1}
ETC_CONF=/etc/slurm/slurm.conf
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
# programs that must be on the PATH once the packages are installed
PROGRAMS=(munged mungekey slurmctld slurmd slurmdbd sbatch srun sinfo squeue scancel sacct sacctmgr
          mariadbd mariadb mariadb-install-db)
# the daemons in start order, then the slurmd of each node (`down` stops them in the reverse order):
# slurmd for one node; with two, slurmd-<node> for each (PID file run/slurmd-<node>.pid)
DAEMONS=(munged mariadbd slurmdbd slurmctld)
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "local-slurm: $*" >&2; }
die() { say "error: $*"; exit 1; }

# --- install: the Debian packages, only when a program is missing ---------------------------------
missing_programs() {
    local p
    for p in "${PROGRAMS[@]}"; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done
}

cmd_install() {
    local missing
    missing=$(missing_programs | tr '\n' ' ')
    if [[ -z ${missing// /} ]]; then
        say "packages present"
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "missing: $missing; installing them needs root (apt-get install ${PACKAGES[*]})"
    say "missing: $missing; installing ${PACKAGES[*]}"
    # the packages' maintainer scripts must not start the system's own munge/mariadb/slurm services:
    # a policy-rc.d that says 101 (action forbidden) keeps them off, unless one is already there
    local policy=/usr/sbin/policy-rc.d placed=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        placed=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
    } >&2 || rc=$?
    [[ $placed == 1 ]] && rm -f "$policy"
    [[ $rc == 0 ]] || die "apt-get failed ($rc)"
    missing=$(missing_programs | tr '\n' ' ')
    [[ -z ${missing// /} ]] || die "still missing after install: $missing"
    say "installed"
}

# --- paths inside STATE_DIR --------------------------------------------------------------------------
set_paths() {
    [[ $# -ge 1 && -n $1 ]] || die "usage: $0 up|down|status STATE_DIR"
    [[ $1 != *[[:space:]]* ]] || die "STATE_DIR must not contain white space (slurm.conf cannot quote it)"
    S=$(realpath -m -- "$1")
    ETC=$S/etc
    CONF=$ETC/slurm.conf
    DBD_CONF=$ETC/slurmdbd.conf
    RUN=$S/run
    LOG=$S/log
    MUNGE_KEY=$S/munge/munge.key
    MUNGE_SOCKET=$RUN/munge.socket
    DB_DIR=$S/mariadb
    DB_SOCKET=$RUN/mariadb.sock
    DB_PASS_FILE=$S/mariadb.pass
    CTLD_SPOOL=$S/spool/slurmctld
    SLURMD_SPOOL=$S/spool/slurmd
    (( ${#MUNGE_SOCKET} < 100 )) || die "STATE_DIR is too long for a socket path: $MUNGE_SOCKET"
    export SLURM_CONF=$CONF
}

pid_file() { echo "$RUN/$1.pid"; }

# the program behind a daemon name: slurmd-<node> is a slurmd
program_of() { echo "${1%%-*}"; }

# the slurmd daemons of the cluster as STATE_DIR last saw it come up (etc/nodes), whatever
# LOCAL_SLURM_NODES says now: slurmd for one node, slurmd-<node> for each of two; and any other
# slurmd that has a PID file there
slurmd_daemons() {
    local f
    local -a nodes=()
    [[ -s $ETC/nodes ]] && mapfile -t nodes <"$ETC/nodes"
    {
        if ((${#nodes[@]} > 1)); then printf 'slurmd-%s\n' "${nodes[@]}"; else echo slurmd; fi
        for f in "$RUN"/slurmd.pid "$RUN"/slurmd-*.pid; do
            [[ -e $f ]] || continue
            f=${f##*/}
            echo "${f%.pid}"
        done
    } | awk '!seen[$0]++'
}

# is process $1 alive (a zombie waiting to be reaped counts as gone)
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# the PID in a daemon's PID file if that process is alive and is that program, else nothing
# (checking the executable guards against a PID that was reused after a crash)
live_pid() {
    local name=$1 file pid exe program
    program=$(program_of "$name")
    file=$(pid_file "$name")
    [[ -s $file ]] || return 0
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] && alive "$pid" || return 0
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    # Debian's /usr/sbin/slurmctld is a link (alternatives) to slurmctld-wlm: compare resolved paths
    [[ -n $exe && $exe == "$(readlink -f "$(command -v "$program")")" ]] && echo "$pid"
    return 0
}

# wait up to $2 seconds for a command to succeed
wait_for() {
    local what=$1 seconds=$2 i
    shift 2
    for ((i = 0; i < seconds * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    say "timed out after ${seconds}s waiting for $what"
    return 1
}

show_log() { [[ -f $1 ]] && { say "last lines of $1:"; tail -n 20 "$1" >&2; }; return 0; }

# --- up: the nodes --------------------------------------------------------------------------------------
# sets HOST (this host's name), NODE_NAMES (the nodes, in slurm.conf order), SLURMDS (their slurmd
# daemon names), NODE_LINES (their slurm.conf lines), SLURMD_FILES (slurmd's PID, spool and log
# settings) and TASK_PLUGIN
plan_nodes() {
    # the node line from the hardware, as slurmd sees it; a little memory is kept back for the system
    local node_line node mem half
    node_line=$(slurmd -C | head -n 1)
    node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$node_line")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
    [[ -n $node && -n $mem ]] || die "cannot read the node from 'slurmd -C': $node_line"
    mem=$((mem > MEM_RESERVE_MB + 1024 ? mem - MEM_RESERVE_MB : mem))
    node_line=$(sed "s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$node_line")
    HOST=$node
    case $NODES in
        1)
            NODE_NAMES=("$node")
            SLURMDS=(slurmd)
            NODE_LINES="# the node as 'slurmd -C' reports it (RealMemory less $MEM_RESERVE_MB MB), reached on the loopback
$node_line NodeAddr=127.0.0.1 State=UNKNOWN"
            SLURMD_FILES="SlurmdSpoolDir=$SLURMD_SPOOL
SlurmdPidFile=$(pid_file slurmd)
SlurmdLogFile=$LOG/slurmd.log"
            TASK_PLUGIN=task/affinity
            ;;
        2)
            # named after this host and 'localhost': the two names that resolve to this machine without
            # touching /etc/hosts (programs reach a node by its name, e.g. torchrun's rendezvous)
            [[ $node != localhost ]] || die "the host is called localhost: no second name for a second node"
            NODE_NAMES=("$node" localhost)
            SLURMDS=("slurmd-$node" slurmd-localhost)
            half=$((mem / 2))
            local shape="CPUs=1 Boards=1 SocketsPerBoard=1 CoresPerSocket=1 ThreadsPerCore=1 RealMemory=$half"
            NODE_LINES="# two nodes on this host, one slurmd each (slurmd -N NODE) on its own port, each with one CPU and
# half of RealMemory ($mem MB: 'slurmd -C' less $MEM_RESERVE_MB MB)
NodeName=$node NodeHostname=$node NodeAddr=127.0.0.1 Port=$SLURMD_PORT $shape State=UNKNOWN
NodeName=localhost NodeHostname=$node NodeAddr=127.0.0.1 Port=$SLURMD2_PORT $shape State=UNKNOWN"
            # %n: the node's name, so that each slurmd has files of its own
            SLURMD_FILES="SlurmdSpoolDir=$SLURMD_SPOOL-%n
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmdLogFile=$LOG/slurmd-%n.log"
            # no binding: task/affinity would pin the tasks of both nodes to the same CPU (each node's
            # CPU 0 is this machine's CPU 0)
            TASK_PLUGIN=task/none
            ;;
        *) die "LOCAL_SLURM_NODES must be 1 or 2, not '$NODES'" ;;
    esac
}

# the nodes of the cluster as it was last brought up (etc/nodes), one a line
planned_before() { [[ -s $ETC/nodes ]] && cat "$ETC/nodes"; return 0; }

# --- up: configuration files ----------------------------------------------------------------------------
write_configs() {
    local n
    mkdir -p "$ETC" "$RUN" "$LOG" "$S/munge" "$CTLD_SPOOL"
    if [[ $NODES == 1 ]]; then
        mkdir -p "$SLURMD_SPOOL"
    else
        for n in "${NODE_NAMES[@]}"; do mkdir -p "$SLURMD_SPOOL-$n"; done
    fi
    # the MUNGE socket's folder must be searchable by all (munged insists); the key's folder private
    chmod 755 "$S" "$RUN"
    chmod 700 "$S/munge"
    printf '%s\n' "${NODE_NAMES[@]}" >"$ETC/nodes"

    # the MUNGE key: made once, kept across up/down so that credentials stay valid
    if [[ ! -s $MUNGE_KEY ]]; then
        mungekey --create --keyfile="$MUNGE_KEY" >&2
    fi
    chmod 400 "$MUNGE_KEY"

    # the database password of the slurm user: made once
    if [[ ! -s $DB_PASS_FILE ]]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$DB_PASS_FILE")
    fi

    # slurm.conf: root runs everything; no cgroups (proctrack/linuxproc, task/affinity); cores and
    # memory are the consumable resources; accounting through slurmdbd; one partition `debug`
    cat >"$CONF" <<EOF
# Generated by cluster/local-slurm.sh up $S; rewritten at every 'up'.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$CTLD_SPOOL
SlurmctldPidFile=$(pid_file slurmctld)
SlurmctldLogFile=$LOG/slurmctld.log
$SLURMD_FILES
SlurmctldDebug=info
SlurmdDebug=info
# process tracking and task binding that need no cgroup delegation
ProctrackType=proctrack/linuxproc
TaskPlugin=$TASK_PLUGIN
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
# cores and memory are consumable: jobs share the node, each gets what it asks for
SchedulerType=sched/backfill
# schedule a batch job as soon as it is submitted (Slurm waits up to 3 s by default to batch them)
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
# a job that no node of its partition could ever run is refused at submission
EnforcePartLimits=ALL
# finished jobs stay visible to squeue/scontrol for 10 minutes (sacct keeps them for good)
MinJobAge=600
ReturnToService=2
KillWait=5
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=60
# accounting: slurmdbd on this machine (AccountingStoragePass names the MUNGE socket to use)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
# keep each job's --comment (the Snakemake SLURM plugin names the rule there) for sacct
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
$NODE_LINES
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

    # slurmdbd.conf: must be owned by SlurmUser and unreadable by others (it holds the DB password)
    (umask 077 && cat >"$DBD_CONF" <<EOF
# Generated by cluster/local-slurm.sh up $S; rewritten at every 'up'.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$(pid_file slurmdbd)
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$DB_PASS_FILE")
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$DBD_CONF"
}

# /etc/slurm/slurm.conf -> our file: the snakemake slurm job-step plugin unsets SLURM_CONF before its
# inner srun, which then reads the default path
link_etc_conf() {
    [[ $ETC_LINK == 1 ]] || return 0
    if [[ -e $ETC_CONF && ! -L $ETC_CONF ]]; then
        die "$ETC_CONF is a regular file, not ours; move it away or set LOCAL_SLURM_ETC_LINK=0"
    fi
    mkdir -p "${ETC_CONF%/*}"
    ln -sfn "$CONF" "$ETC_CONF"
}

unlink_etc_conf() {
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
        rm -f "$ETC_CONF"
    fi
}

# --- up: starting the daemons ------------------------------------------------------------------------
# start_daemon NAME COMMAND...: unless NAME already runs (per its PID file), run COMMAND with its
# standard streams in STATE_DIR/log and wait until the PID file names a live NAME process
start_daemon() {
    local name=$1 pid
    shift
    pid=$(live_pid "$name")
    if [[ -n $pid ]]; then
        say "$name already running (pid $pid)"
        return 0
    fi
    rm -f "$(pid_file "$name")"
    # setsid: the daemon leaves our session, so a terminal's ^C or the caller's exit does not reach it
    setsid "$@" </dev/null >>"$LOG/$name.out" 2>&1 &
    local launched=$! rc=0 i
    for ((i = 0; i < 150; i++)); do  # up to 30 s
        has_live_pid "$name" && break
        # the launched process ended (daemons fork and exit): a non-zero status is a failed start
        if ! kill -0 "$launched" 2>/dev/null; then
            wait "$launched" || rc=$?
            ((rc == 0)) || break
        fi
        sleep 0.2
    done
    if ! has_live_pid "$name"; then
        show_log "$LOG/$name.out"
        show_log "$LOG/$name.log"
        die "$name did not start"
    fi
    say "$name started (pid $(live_pid "$name"), at ${SECONDS}s)"
}

has_live_pid() { [[ -n $(live_pid "$1") ]]; }

# a port someone else listens on (another local cluster, a system MariaDB) makes a daemon fail late
# and obscurely; say so before starting it
check_port_free() {
    local name=$1 port=$2
    [[ -z $(live_pid "$name") ]] || return 0
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port (for $name) is in use on 127.0.0.1: another cluster up? set LOCAL_SLURM_PORT_BASE"
    fi
}

start_munged() {
    start_daemon munged munged --force --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" \
        --pid-file="$(pid_file munged)" --log-file="$LOG/munged.log" --seed-file="$S/munge/munged.seed"
    wait_for "a MUNGE credential" 20 munge -S "$MUNGE_SOCKET" -n || die "munged does not answer"
}

db_sql() { mariadb --no-defaults --socket="$DB_SOCKET" -u root "$@"; }

start_mariadb() {
    # a database of our own in STATE_DIR, reached by slurmdbd over TCP on 127.0.0.1:DB_PORT
    if [[ ! -d $DB_DIR/mysql ]]; then
        say "creating the MariaDB data directory"
        mariadb-install-db --no-defaults --user=root --datadir="$DB_DIR" --auth-root-authentication-method=socket \
            --skip-test-db >"$LOG/mariadb-install-db.log" 2>&1 ||
            { show_log "$LOG/mariadb-install-db.log"; die "mariadb-install-db failed"; }
    fi
    # the buffer pool and lock timeout that slurmdbd asks for; no binary log
    start_daemon mariadbd mariadbd --no-defaults --user=root --datadir="$DB_DIR" --socket="$DB_SOCKET" \
        --pid-file="$(pid_file mariadbd)" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$LOG/mariadbd.log" --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        --skip-log-bin
    wait_for "MariaDB" 60 db_sql -e 'SELECT 1' || { show_log "$LOG/mariadbd.log"; die "MariaDB does not answer"; }
    # the accounting database and its user (idempotent); the password is set again at every 'up'
    local pass
    pass=$(cat "$DB_PASS_FILE")
    db_sql --batch <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
    start_daemon slurmdbd slurmdbd
    wait_for "slurmdbd" 60 sacctmgr -n list cluster || { show_log "$LOG/slurmdbd.log"; die "slurmdbd does not answer"; }
}

# the cluster, an account for the jobs, and the current user in it with that default account
# (sacctmgr's reports go to log/sacctmgr.log)
ensure_associations() {
    local user log=$LOG/sacctmgr.log
    user=$(id -un)
    if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER" format=cluster) ]]; then
        sacctmgr -i add cluster "$CLUSTER" >>"$log" 2>&1 || { show_log "$log"; die "sacctmgr add cluster failed"; }
    fi
    if [[ -z $(sacctmgr -n -P list account "$ACCOUNT" format=account) ]]; then
        sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="local jobs" Organization=local \
            >>"$log" 2>&1 || { show_log "$log"; die "sacctmgr add account failed"; }
    fi
    if [[ -z $(sacctmgr -n -P list association cluster="$CLUSTER" account="$ACCOUNT" user="$user" format=user) ]]; then
        sacctmgr -i add user "$user" Account="$ACCOUNT" Cluster="$CLUSTER" >>"$log" 2>&1 ||
            { show_log "$log"; die "sacctmgr add user failed"; }
    fi
    if [[ $(sacctmgr -n -P list user "$user" format=defaultaccount) != "$ACCOUNT" ]]; then
        sacctmgr -i modify user "$user" set DefaultAccount="$ACCOUNT" >>"$log" 2>&1 ||
            { show_log "$log"; die "sacctmgr modify user failed"; }
    fi
    say "cluster $CLUSTER, account $ACCOUNT, user $user (default account $ACCOUNT) in accounting"
}

node_state() { sinfo -h -N -n "$1" -o %T 2>/dev/null; }
nodes_are_idle() {
    local n
    for n in "${NODE_NAMES[@]}"; do [[ $(node_state "$n") == idle ]] || return 1; done
}

cmd_up() {
    set_paths "$@"
    local t0=$SECONDS missing
    missing=$(missing_programs | tr '\n' ' ')
    [[ -z ${missing// /} ]] || die "missing: $missing; run '$0 install' first"
    [[ $(id -u) == 0 ]] || die "'up' runs the daemons as root; run it as root"
    plan_nodes
    # a running cluster keeps its nodes: changing LOCAL_SLURM_NODES needs a 'down' first
    if [[ -n $(live_pid slurmctld) && $(planned_before) != "$(printf '%s\n' "${NODE_NAMES[@]}")" ]]; then
        die "the cluster in $S runs with nodes $(planned_before | tr '\n' ' ')(not ${NODE_NAMES[*]}); run 'down' first"
    fi
    check_port_free mariadbd "$DB_PORT"
    check_port_free slurmdbd "$DBD_PORT"
    check_port_free slurmctld "$CTLD_PORT"
    check_port_free "${SLURMDS[0]}" "$SLURMD_PORT"
    [[ $NODES == 1 ]] || check_port_free "${SLURMDS[1]}" "$SLURMD2_PORT"
    write_configs
    link_etc_conf
    start_munged
    start_mariadb
    start_slurmdbd
    ensure_associations
    start_daemon slurmctld slurmctld
    wait_for "slurmctld" 30 scontrol ping || { show_log "$LOG/slurmctld.log"; die "slurmctld does not answer"; }
    local i
    if [[ $NODES == 1 ]]; then
        start_daemon slurmd slurmd
    else
        for i in "${!NODE_NAMES[@]}"; do
            start_daemon "${SLURMDS[i]}" slurmd -N "${NODE_NAMES[i]}"
        done
    fi
    # the nodes must come to idle, and sacct must answer (the snakemake executor asks it for job states)
    if ! wait_for "nodes ${NODE_NAMES[*]} to be idle" 60 nodes_are_idle; then
        sinfo -N -l >&2 || true
        show_log "$LOG/slurmctld.log"
        for i in "${!SLURMDS[@]}"; do show_log "$LOG/${SLURMDS[i]}.log"; done
        die "nodes ${NODE_NAMES[*]} are not all idle"
    fi
    wait_for "sacct" 30 sacct -n -X -a || die "sacct does not answer"
    say "up in $((SECONDS - t0))s: node(s) ${NODE_NAMES[*]} idle, partition debug, account $ACCOUNT"
    echo "export SLURM_CONF=$CONF"
}

# --- down: cancel jobs, then stop each daemon by its PID -----------------------------------------------
# stop_daemons NAME...: SIGTERM to each daemon's PID (from its PID file), then wait for all of them;
# one still there after 30 s gets SIGKILL
stop_daemons() {
    local name pid i
    local -A pids=()
    for name in "$@"; do
        pid=$(live_pid "$name")
        if [[ -n $pid ]]; then
            pids[$name]=$pid
            kill -TERM "$pid" 2>/dev/null || true
        else
            rm -f "$(pid_file "$name")"
        fi
    done
    for name in "${!pids[@]}"; do
        pid=${pids[$name]}
        for ((i = 0; i < 150; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "$name (pid $pid) still running; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
        fi
        ! alive "$pid" || die "$name (pid $pid) does not stop"
        rm -f "$(pid_file "$name")"
        say "$name stopped (pid $pid)"
    done
}

# jobs still running are cancelled first, so that no slurmstepd outlives slurmd
cancel_jobs() {
    [[ -n $(live_pid slurmctld) ]] || return 0
    local ids
    ids=$(squeue -h -t PENDING,RUNNING,SUSPENDED,CONFIGURING -o %i 2>/dev/null || true)
    [[ -n $ids ]] || return 0
    say "cancelling jobs: $(tr '\n' ' ' <<<"$ids")"
    # shellcheck disable=SC2086
    scancel $ids 2>/dev/null || true
    # without slurmd nothing can end them; leftover job steps are dealt with after the daemons stop
    local name
    for name in $(slurmd_daemons); do
        if [[ -n $(live_pid "$name") ]]; then
            wait_for "cancelled jobs to end" 30 jobs_gone || true
            break
        fi
    done
}

# processes of this cluster's jobs that outlived slurmd (slurmstepd and what it started, when slurmd
# died before its jobs ended): found by our SLURM_CONF in their environment together with SLURM_JOB_ID
# (a job's processes) or a slurmstepd executable, never by name; this script's own PID is left out
leftover_job_processes() {
    local dir pid stepd env
    stepd=$(readlink -f "$(command -v slurmstepd)" 2>/dev/null || true)
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        [[ $pid != "$$" && $pid != "$BASHPID" ]] || continue
        env=$(tr '\0' '\n' 2>/dev/null <"$dir/environ") || continue
        grep -qxF "SLURM_CONF=$CONF" <<<"$env" || continue
        if grep -q '^SLURM_JOB_ID=' <<<"$env" || [[ $(readlink "$dir/exe" 2>/dev/null) == "$stepd" ]]; then
            alive "$pid" && echo "$pid"
        fi
    done
    return 0
}

jobs_gone() { [[ -z $(squeue -h -t PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING -o %i 2>/dev/null) ]]; }

cmd_down() {
    set_paths "$@"
    [[ -d $S ]] || { say "$S does not exist; nothing to stop"; return 0; }
    local t0=$SECONDS
    cancel_jobs
    # in three steps, so that slurmctld can still flush accounting records to slurmdbd, and slurmdbd
    # to MariaDB, while they stop (each takes 1-3 s to exit)
    # shellcheck disable=SC2046
    stop_daemons $(slurmd_daemons) slurmctld
    stop_daemons slurmdbd
    stop_daemons mariadbd munged
    local pids
    pids=$(leftover_job_processes | tr '\n' ' ')
    if [[ -n ${pids// /} ]]; then
        say "job processes outlived slurmd: $pids; sending SIGKILL"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
    unlink_etc_conf
    say "down in $((SECONDS - t0))s"
}

# --- status: each daemon, and the node -------------------------------------------------------------------
cmd_status() {
    set_paths "$@"
    local name pid up=0
    local -a daemons
    mapfile -t daemons < <(printf '%s\n' "${DAEMONS[@]}"; slurmd_daemons)
    for name in "${daemons[@]}"; do
        pid=$(live_pid "$name")
        if [[ -n $pid ]]; then
            printf '%-10s running (pid %s)\n' "$name" "$pid"
            up=$((up + 1))
        else
            printf '%-10s stopped\n' "$name"
        fi
    done
    if [[ -n $(live_pid slurmctld) ]]; then
        sinfo -N -o '%N %P %T %c %m' || true
    fi
    # exit 0: all running, 3: none, 1: some
    ((up == ${#daemons[@]})) && return 0
    ((up == 0)) && return 3
    return 1
}

# --- dispatch ------------------------------------------------------------------------------------------------
case ${1:-} in
    install) cmd_install ;;
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) shift; cmd_status "$@" ;;
    *) echo "usage: $0 install | up STATE_DIR | down STATE_DIR | status STATE_DIR" >&2; exit 2 ;;
esac
