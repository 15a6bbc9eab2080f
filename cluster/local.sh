#!/usr/bin/env bash
# A real multi-node Ray cluster on this machine: one head node and N worker nodes, every one a
# separate raylet on 127.0.0.1 with its own CPUs and a custom resource naming it ("head",
# "worker_1", ...). Use it to try `ray job submit`, multi-worker Ray Train and node failures
# without a cloud cluster.
#
#   cluster/local.sh start 2     # head + 2 workers; prints the addresses
#   cluster/local.sh status      # the nodes Ray sees
#   cluster/local.sh stop        # stops exactly this cluster (no `ray stop`, which would stop
#                                # every Ray process on the machine)
#
# Each node is one `ray start --block` process started in its own session (setsid): on SIGTERM it
# stops the raylet and the processes it started; `stop` then ends whatever is left in that
# session. PIDs, addresses and logs are kept in the state folder (default runs/local-cluster-PORT).
# Token authentication is off on both sides (RAY_AUTH_MODE=disabled, PLATFORM.md): submit with
# `RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:DASHBOARD_PORT ...`.
#
# Settings (environment):
#   DEAR_RAY_PORT (6390)  GCS port of the head      DEAR_RAY_DASHBOARD_PORT (8265)
#   DEAR_RAY_HEAD_CPUS (1) DEAR_RAY_WORKER_CPUS (1)  DEAR_RAY_OBJECT_STORE_BYTES (200000000 a node)
#   DEAR_RAY_STATE_DIR    DEAR_RAY_BIN (the project venv's ray)   DEAR_RAY_START_TIMEOUT (90 s)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAY="${DEAR_RAY_BIN:-$REPO/.venv/bin/ray}"
PORT="${DEAR_RAY_PORT:-6390}"
DASHBOARD_PORT="${DEAR_RAY_DASHBOARD_PORT:-8265}"
HEAD_CPUS="${DEAR_RAY_HEAD_CPUS:-1}"
WORKER_CPUS="${DEAR_RAY_WORKER_CPUS:-1}"
OBJECT_STORE="${DEAR_RAY_OBJECT_STORE_BYTES:-200000000}"
STATE_DIR="${DEAR_RAY_STATE_DIR:-$REPO/runs/local-cluster-$PORT}"
START_TIMEOUT="${DEAR_RAY_START_TIMEOUT:-90}"
TEMP_DIR="/tmp/dear_ray_$PORT"   # short: Ray's Unix socket paths must stay under 108 bytes;
                                 # worker node i uses ${TEMP_DIR}_w$i
STATE="$STATE_DIR/cluster.state"
ADDRESS="127.0.0.1:$PORT"

export RAY_AUTH_MODE=disabled
# Jobs (`ray job submit -- dear-ray ...`) inherit the nodes' environment: find this venv's commands.
PATH="$(dirname "$RAY"):$PATH"
export PATH
# Stop promptly: a node otherwise drains for up to 30 s on SIGTERM.
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0
export RAY_USAGE_STATS_ENABLED=0

die() { echo "local.sh: $*" >&2; exit 1; }
alive() { kill -0 "$1" 2>/dev/null; }
# PIDs of the processes still in session $1 (a node's `ray start --block` is its session leader).
session_pids() { ps -e -o pid=,sid= | awk -v s="$1" '$2 == s { print $1 }'; }

alive_nodes() {
  # number of alive nodes in the cluster, as Ray's GCS reports them
  "$RAY" status --address "$ADDRESS" 2>/dev/null | awk '
    /^Active:/ { active = 1; next }
    /^(Pending|Recent failures):/ { active = 0 }
    active && /node_/ { n++ }
    END { print n + 0 }'
}

start_node() {  # start_node NAME LOG ARGS... ; prints the PID
  local name="$1" log="$2"; shift 2
  setsid "$RAY" start --block --node-ip-address 127.0.0.1 --num-gpus 0 \
    --object-store-memory "$OBJECT_STORE" --disable-usage-stats "$@" \
    --resources "{\"$name\": 1}" >"$log" 2>&1 </dev/null &
  echo $!
}

wait_for_nodes() {  # wait_for_nodes COUNT PID...
  local want="$1"; shift
  local deadline=$((SECONDS + START_TIMEOUT))
  while (( SECONDS < deadline )); do
    for pid in "$@"; do
      alive "$pid" || { cmd_stop >/dev/null 2>&1 || true; die "a node exited during start-up; see the logs in $STATE_DIR"; }
    done
    [[ "$(alive_nodes)" -ge "$want" ]] && return 0
    sleep 1
  done
  cmd_stop >/dev/null 2>&1 || true
  die "the cluster did not reach $want alive nodes within ${START_TIMEOUT}s; logs in $STATE_DIR"
}

cmd_start() {
  local workers="${1:-}"
  [[ "$workers" =~ ^[0-9]+$ ]] || die "usage: local.sh start N   (N = number of worker nodes, >= 0)"
  [[ -x "$RAY" ]] || die "$RAY not found; run 'make test' once to create the project venv, or set DEAR_RAY_BIN"
  if [[ -f "$STATE" ]]; then
    local head; head="$(awk '$1 == "head" { print $2 }' "$STATE")"
    if [[ -n "$head" ]] && alive "$head"; then
      die "a cluster is already running on port $PORT (state $STATE); stop it first"
    fi
    rm -f "$STATE"
  fi
  mkdir -p "$STATE_DIR"
  local pids=()
  local head_pid
  # the head's agent and metrics ports derive from PORT too (the defaults, 52365 and a random
  # one, are taken when another cluster runs on this machine: no agent, no job submission)
  head_pid="$(start_node head "$STATE_DIR/head.log" --head --port "$PORT" \
    --num-cpus "$HEAD_CPUS" --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" \
    --dashboard-agent-listen-port $((PORT + 1000)) --metrics-export-port $((PORT + 2000)) \
    --temp-dir "$TEMP_DIR")"
  pids+=("$head_pid")
  printf 'address %s\ndashboard http://127.0.0.1:%s\ntemp_dir %s\nhead %s\n' \
    "$ADDRESS" "$DASHBOARD_PORT" "$TEMP_DIR" "$head_pid" >"$STATE"
  wait_for_nodes 1 "${pids[@]}"
  local i pid
  for ((i = 1; i <= workers; i++)); do
    # distinct agent and metrics ports: every node on this host would otherwise take the defaults
    # its own temp dir, as separate machines have: nodes sharing one would share the runtime-env
    # cache, and one node's clean-up would delete a job's working_dir under another node's driver
    pid="$(start_node "worker_$i" "$STATE_DIR/worker_$i.log" --address "$ADDRESS" \
      --num-cpus "$WORKER_CPUS" --dashboard-agent-listen-port $((PORT + 1000 + i)) \
      --metrics-export-port $((PORT + 2000 + i)) --temp-dir "${TEMP_DIR}_w$i")"
    pids+=("$pid")
    printf 'worker_%s %s\ntemp_dir %s\n' "$i" "$pid" "${TEMP_DIR}_w$i" >>"$STATE"
  done
  wait_for_nodes $((workers + 1)) "${pids[@]}"
  echo "Ray cluster up: $((workers + 1)) nodes (head + $workers workers), GCS $ADDRESS"
  echo "  dashboard / job server: http://127.0.0.1:$DASHBOARD_PORT"
  # the working dir is uploaded without data/ and runs/ (jobs/runtime_env.yaml excludes them);
  # every local node sees this checkout, so the job runs the uploaded code from it: the demo's
  # relative data roots (data/synth, and data/synth_unbiased of its softmax_control case, which
  # a --set data.data_root would not reach) resolve as under make demo; its own run folder
  # keeps it apart from make demo's runs/
  echo "  submit (the demo sweep, after make demo has generated data/synth and data/synth_unbiased):"
  echo "    RAY_AUTH_MODE=disabled $RAY job submit --address http://127.0.0.1:$DASHBOARD_PORT --working-dir $REPO --runtime-env jobs/runtime_env.yaml --entrypoint-num-cpus 0 -- bash -c 'cd $REPO && dear-ray sweep jobs/sweeps/demo.yaml --set tracking.run_dir=runs/cluster'"
  echo "  stop:   cluster/local.sh stop"
}

stop_pid() {  # SIGTERM a node's `ray start --block`, then end what is left of its session
  local pid="$1" deadline
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 30))
    while alive "$pid" && (( SECONDS < deadline )); do sleep 0.5; done
  fi
  local left; left="$(session_pids "$pid")"
  if [[ -n "$left" ]]; then
    kill -TERM $left 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while [[ -n "$(session_pids "$pid")" ]] && (( SECONDS < deadline )); do sleep 0.5; done
    left="$(session_pids "$pid")"
    [[ -z "$left" ]] || kill -KILL $left 2>/dev/null || true
  fi
}

cmd_stop() {
  [[ -f "$STATE" ]] || die "no cluster state at $STATE (nothing started on port $PORT)"
  local temps; temps="$(awk '$1 == "temp_dir" { print $2 }' "$STATE")"
  # workers first, the head (GCS) last
  local name pid
  while read -r name pid; do
    [[ "$name" == worker_* ]] && stop_pid "$pid"
  done <"$STATE"
  while read -r name pid; do
    [[ "$name" == head ]] && stop_pid "$pid"
  done <"$STATE"
  rm -f "$STATE"
  local temp
  for temp in $temps; do
    [[ "$temp" == /tmp/dear_ray_* ]] && rm -rf "$temp"
  done
  echo "Ray cluster on port $PORT stopped"
}

cmd_status() {
  [[ -f "$STATE" ]] || die "no cluster state at $STATE (nothing started on port $PORT)"
  cat "$STATE"
  "$RAY" status --address "$ADDRESS"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) die "usage: local.sh start N | stop | status" ;;
esac
