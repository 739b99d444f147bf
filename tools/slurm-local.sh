#!/usr/bin/env bash
# slurm-local.sh — a REAL single-node Slurm cluster on localhost (Debian's munge, slurmctld, slurmd),
# for the tests of packages/deploy-slurm and CI. Started and stopped by the tests themselves.
#
#   bash tools/slurm-local.sh start      # install (if needed) + munge key + config + start + wait for the node
#   bash tools/slurm-local.sh status     # the daemons (by pid file) and sinfo; exit 1 if one is down
#   bash tools/slurm-local.sh selftest   # sbatch/squeue/scancel/pending checks (cluster must be started)
#   bash tools/slurm-local.sh stop       # cancel every job, stop only the daemons this script started
#   bash tools/slurm-local.sh purge      # stop + delete the state/log dir (the config file is left)
#   bash tools/slurm-local.sh install    # only apt-get install the packages (tools/setup-test-deps.sh lists them too)
#
# Runs as root (re-executes itself with password-less sudo otherwise): slurmd must be root, munged
# runs as user munge, slurmctld drops to SlurmUser=slurm. No systemd is needed or used: the daemons
# run in their foreground modes under start-stop-daemon with pid files of our own, and stop only
# ever signals a pid from those files whose /proc/PID/exe is the expected binary.
# Safe to re-run: 'start' skips daemons that are already up and restarts them only if the
# generated slurm.conf changed. Verified recipe: /work/shared/recipes/slurm-local.md (pitfalls:
# munge key modes, /run/munge, --origin, DefMemPerCPU, RealMemory, node name 'localhost').
#
# The node offers SLURM_LOCAL_CPUS CPUs (default 4, whatever the machine has: config_overrides):
# the tests need room for four one-CPU jobs at once, and a fifth that stays pending.
#
# Env knobs (defaults in brackets):
#   SLURM_LOCAL_DIR          state/log/pid dir                       [/var/spool/slurm-local]
#   SLURM_LOCAL_CONF         slurm.conf path (clients read it by default
#                            only at /etc/slurm/slurm.conf; otherwise export SLURM_CONF) [/etc/slurm/slurm.conf]
#   SLURM_LOCAL_CLUSTER      ClusterName                             [local]
#   SLURM_LOCAL_CPUS         CPUs of node 'localhost'                [4]
#   SLURM_LOCAL_MEM_MB       RealMemory of node 'localhost'          [90% of MemTotal]
#   SLURM_LOCAL_DEF_MEM_PER_CPU  DefMemPerCPU (MB) for jobs without --mem [512]
#   SLURM_LOCAL_CTLD_PORT / SLURM_LOCAL_SLURMD_PORT               [6817 / 6818]
#   SLURM_LOCAL_TIMEOUT      seconds to wait for readiness           [90]
set -euo pipefail

MODE="${1:-start}"
BASE="${SLURM_LOCAL_DIR:-/var/spool/slurm-local}"
CONF="${SLURM_LOCAL_CONF:-/etc/slurm/slurm.conf}"
CLUSTER="${SLURM_LOCAL_CLUSTER:-local}"
CTLD_PORT="${SLURM_LOCAL_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_LOCAL_SLURMD_PORT:-6818}"
TIMEOUT="${SLURM_LOCAL_TIMEOUT:-90}"
DEF_MEM_PER_CPU="${SLURM_LOCAL_DEF_MEM_PER_CPU:-512}"
NODE=localhost
RUN="$BASE/run"
LOG="$BASE/log"
export SLURM_CONF="$CONF"

MUNGED=/usr/sbin/munged
SLURMCTLD=/usr/sbin/slurmctld
SLURMD=/usr/sbin/slurmd

log() { printf '[slurm-local] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    exec sudo -n --preserve-env=SLURM_LOCAL_DIR,SLURM_LOCAL_CONF,SLURM_LOCAL_CLUSTER,SLURM_LOCAL_CPUS,SLURM_LOCAL_MEM_MB,SLURM_LOCAL_DEF_MEM_PER_CPU,SLURM_LOCAL_CTLD_PORT,SLURM_LOCAL_SLURMD_PORT,SLURM_LOCAL_TIMEOUT bash "$0" "$@"
  fi
  die "must run as root (or with password-less sudo): it installs munge and Slurm and starts slurmd as root"
fi

# alive = exists and is not a zombie (PID 1 in containers does not always reap promptly)
alive() { local s; s="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1; [[ -n $s && $s != Z* ]]; }

# ---------- pid-file helpers: only ever touch PIDs we recorded ourselves ----------
# prints the pid if pid file exists, process is alive and /proc/PID/exe is the expected binary
pid_of() {
  local f="$RUN/$1.pid" exe="$2" pid
  [[ -s $f ]] || return 1
  pid="$(<"$f")"
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" == "$(readlink -f "$exe")" ]] || return 1
  echo "$pid"
}

stop_one() {
  local name="$1" exe="$2" pid i
  if pid="$(pid_of "$name" "$exe")"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then log "$name did not exit, SIGKILL $pid"; kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$RUN/$name.pid"
}

# start_bg NAME EXE USER[:GROUP] ARGS... : run EXE in the foreground mode of the daemon, detached,
# with our own pid file; stdout/stderr to $LOG/NAME.out
start_bg() {
  local name="$1" exe="$2" user="$3"; shift 3
  if pid_of "$name" "$exe" >/dev/null; then log "$name already running (pid $(pid_of "$name" "$exe"))"; return 0; fi
  rm -f "$RUN/$name.pid"
  start-stop-daemon --start --background --make-pidfile --pidfile "$RUN/$name.pid" \
    --chuid "$user" --output "$LOG/$name.out" --exec "$exe" -- "$@"
  sleep 0.3
  pid_of "$name" "$exe" >/dev/null || { tail -n 30 "$LOG/$name.out" >&2 || true; die "$name exited right after start (see $LOG/$name.out)"; }
  log "started $name (pid $(pid_of "$name" "$exe"))"
}

wait_for() { # wait_for DESCRIPTION CMD... (bounded by $TIMEOUT)
  local what="$1" t0=$SECONDS; shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS - t0 < TIMEOUT )) || die "timeout (${TIMEOUT}s) waiting for $what"
    sleep 0.5
  done
  log "$what: ready after $((SECONDS - t0))s"
}

# ---------- install ----------
do_install() {
  local need=() p
  for p in munge slurmctld slurmd slurm-client; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  ((${#need[@]})) || return 0
  log "apt-get install ${need[*]}"
  # Without systemd, the postinst 'invoke-rc.d start' is denied/fails harmlessly; nothing is started.
  if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${need[@]}" </dev/null; then
    apt-get -o DPkg::Lock::Timeout=300 update -q </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${need[@]}" </dev/null
  fi
}

# ---------- munge ----------
munge_ok() { munge -n </dev/null | unmunge >/dev/null; }

start_munge() {
  install -d -o munge -g munge -m 0700 /etc/munge
  install -d -o munge -g munge -m 0700 /var/log/munge
  install -d -o munge -g munge -m 0711 /var/lib/munge
  install -d -o munge -g munge -m 0755 /run/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    mungekey --create --keyfile=/etc/munge/munge.key --force
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  if ! pid_of munged "$MUNGED" >/dev/null && munge_ok 2>/dev/null; then
    log "a munged not started by this script is already answering on /run/munge; using it"
    return 0
  fi
  start_bg munged "$MUNGED" munge:munge --foreground --origin=127.0.0.1
  wait_for "munge" munge_ok
}

# ---------- slurm.conf ----------
gen_conf() {
  local cpus mem_mb
  cpus="${SLURM_LOCAL_CPUS:-4}"
  mem_mb="${SLURM_LOCAL_MEM_MB:-$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)}"
  cat <<EOF
# Generated by tools/slurm-local.sh (single-node test cluster). Re-running the script overwrites this file.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/ctld
SlurmdSpoolDir=$BASE/slurmd
SlurmctldPidFile=$RUN/slurmctld.self.pid
SlurmdPidFile=$RUN/slurmd.self.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: track job processes via /proc parent links, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd: 'sacct' does not work; job completions are logged as text (sacct -c reads them)
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log
MpiDefault=none
# Debian's default MailProg ('mail') is not installed
MailProg=/usr/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
# CPUs AND memory are consumable -> --mem is enforced at scheduling time (not at run time: no cgroups)
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU
# use the configured CPUs/RealMemory even if the hardware reports something else (no DRAIN)
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
# keep finished jobs visible to 'scontrol show job' / 'squeue -t all' for 10 minutes
MinJobAge=600
NodeName=$NODE NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=debug Nodes=$NODE MaxTime=01:00:00 State=UP
EOF
}

# node up = responding and not down/drained ('idle' on a fresh start; 'mixed'/'allocated' if jobs
# survived a daemon restart — slurm keeps jobs across slurmctld/slurmd restarts)
node_up() { [[ "$(sinfo -h -n "$NODE" -p cpu -o %T 2>/dev/null)" =~ ^(idle|mixed|allocated|completing)$ ]]; }

do_start() {
  local t0=$SECONDS tmp changed=0
  do_install
  log "install step: $((SECONDS - t0))s"
  install -d -m 0755 "$BASE" "$RUN"
  install -d -o slurm -g slurm -m 0755 "$LOG" "$BASE/ctld"
  install -d -m 0755 "$BASE/slurmd"
  install -d -m 0755 "$(dirname "$CONF")"
  tmp="$(mktemp)"
  gen_conf >"$tmp"
  if [[ -f $CONF ]] && cmp -s "$tmp" "$CONF"; then
    rm -f "$tmp"
  else
    if [[ -f $CONF ]] && ! grep -q '^# Generated by .*slurm-local.sh' "$CONF" && [[ ! -e $CONF.orig ]]; then
      cp -p "$CONF" "$CONF.orig"; log "saved pre-existing $CONF as $CONF.orig"
    fi
    install -m 0644 "$tmp" "$CONF"; rm -f "$tmp"
    changed=1; log "wrote $CONF"
  fi
  if ((changed)); then # config changed: restart our slurm daemons if they were running
    stop_one slurmd "$SLURMD"; stop_one slurmctld "$SLURMCTLD"
  fi
  local t1=$SECONDS
  start_munge
  start_bg slurmctld "$SLURMCTLD" root -D -f "$CONF"
  wait_for "slurmctld" scontrol ping
  start_bg slurmd "$SLURMD" root -D -N "$NODE" -f "$CONF"
  # a node left DOWN/DRAIN by an earlier run (e.g. config change) is put back
  if ! node_up; then sleep 2; node_up || scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true; fi
  wait_for "node $NODE up (idle)" node_up
  log "daemons started in $((SECONDS - t1))s; total $((SECONDS - t0))s"
  sinfo
}

do_stop() {
  if pid_of slurmctld "$SLURMCTLD" >/dev/null; then
    # cancel every job of this (private) cluster so no slurmstepd/job processes outlive slurmd
    local ids; ids="$(squeue -h -o %A 2>/dev/null || true)"
    if [[ -n $ids ]]; then
      log "cancelling jobs: $(echo $ids)"; scancel $ids 2>/dev/null || true
      local i; for ((i = 0; i < 30; i++)); do [[ -z "$(squeue -h -o %A 2>/dev/null)" ]] && break; sleep 0.5; done
    fi
  fi
  stop_one slurmd "$SLURMD"
  stop_one slurmctld "$SLURMCTLD"
  stop_one munged "$MUNGED"
  rm -f "$RUN/slurmctld.self.pid" "$RUN/slurmd.self.pid"  # the daemons' own pid files (slurmctld runs as slurm and cannot unlink it)
}

do_status() {
  local n exe rc=0
  for n in munged:$MUNGED slurmctld:$SLURMCTLD slurmd:$SLURMD; do
    exe="${n#*:}"; n="${n%%:*}"
    if pid_of "$n" "$exe" >/dev/null; then echo "$n: running (pid $(pid_of "$n" "$exe"))"; else echo "$n: not running"; rc=1; fi
  done
  sinfo 2>&1 || true
  return $rc
}

# ---------- self test ----------
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }

wait_state() { # wait_state JOBID REGEX SECONDS
  local t0=$SECONDS s
  while :; do
    s="$(job_state "$1")"
    [[ $s =~ ^($2)$ ]] && { echo "$s"; return 0; }
    (( SECONDS - t0 < $3 )) || { echo "$s"; return 1; }
    sleep 0.5
  done
}

do_selftest() {
  local dir cpus id st ids=() pend
  dir="$(mktemp -d /tmp/slurm-selftest.XXXXXX)"
  cpus="$(sinfo -h -n "$NODE" -o %c)"
  cat >"$dir/job.sh" <<EOF
#!/usr/bin/env bash
#SBATCH --partition=cpu
#SBATCH --cpus-per-task=1
#SBATCH --mem=1G
#SBATCH --time=00:05:00
#SBATCH --job-name=test
#SBATCH --output=$dir/slurm-%j.out
echo "hello from \$SLURM_JOB_ID on \$(hostname)" > "$dir/result.txt"
sleep 2
EOF
  id="$(sbatch --parsable "$dir/job.sh")"; log "1) submitted job $id"
  local sq; sq="$(squeue -j "$id" -o '%.8i %.9P %.10j %.8T %.10M %R')"; echo "$sq" >&2
  grep -qw "$id" <<<"$sq" || die "squeue does not show $id"
  st="$(wait_state "$id" COMPLETED 60)" || die "job $id ended in state '$st'"
  [[ -s $dir/result.txt ]] || die "output file missing"
  log "   job $id COMPLETED, output: $(cat "$dir/result.txt")"

  id="$(sbatch --parsable -p cpu --mem=100M -t 00:10:00 -J sleeper --output=/dev/null --wrap 'sleep 300')"
  st="$(wait_state "$id" RUNNING 30)" || die "sleeper $id not running ($st)"
  scancel "$id"
  st="$(wait_state "$id" CANCELLED 30)" || die "sleeper $id not cancelled ($st)"
  local t0=$SECONDS
  while squeue -h -j "$id" 2>/dev/null | grep -q .; do (( SECONDS - t0 < 30 )) || die "$id still in squeue"; sleep 0.5; done
  log "2) job $id RUNNING -> scancel -> CANCELLED, gone from squeue"

  for i in 1 2 3; do
    ids+=("$(sbatch --parsable -p cpu --cpus-per-task="$cpus" --mem=256M -t 00:05:00 -J full$i --output=/dev/null --wrap 'sleep 120')")
  done
  sleep 3
  squeue -o '%.8i %.9P %.10j %.8T %.6C %R' >&2
  pend="$(squeue -h -t PENDING -o %A | grep -cE "^($(IFS='|'; echo "${ids[*]}"))$" || true)"
  [[ $pend -eq 2 ]] || die "expected 2 pending jobs, got $pend"
  log "3) 3 jobs x $cpus CPUs: 1 RUNNING, 2 PENDING (Resources/Priority)"
  scancel "${ids[@]}"
  rm -rf "$dir"
  log "selftest OK"
}

case "$MODE" in
  start) do_start ;;
  stop) do_stop ;;
  restart) do_stop; do_start ;;
  status) do_status ;;
  selftest) do_selftest ;;
  purge) do_stop; rm -rf "$BASE"; log "removed $BASE" ;;
  install) do_install ;;
  *) echo "usage: $0 {start|stop|restart|status|selftest|purge|install}" >&2; exit 2 ;;
esac
