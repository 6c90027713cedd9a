#!/usr/bin/env bash
# Local Redis Cluster for the cluster tests, using the system's redis-server: 3 masters and
# 3 replicas on 127.0.0.1. A cache like stack/redis.sh: no RDB/AOF persistence, never evict.
# State (one dir per node: nodes.conf, pid file, log) under $STACK_DIR/redis-cluster.
#
#   bash stack/redis-cluster.sh up|down|status
#   bash stack/redis-cluster.sh restart-node PORT   start a stopped (killed) node again, with
#                                                   its nodes.conf: it rejoins the cluster
#
# Env: REDIS_CLUSTER_PORT (7100: nodes on 7100..7105, their cluster bus on port + 10000),
#      REDIS_CLUSTER_NODE_TIMEOUT_MS (2000: a dead master is failed over after ~2-4 s),
#      STACK_DIR (.stack).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STACK_DIR=${STACK_DIR:-.stack}
mkdir -p "$STACK_DIR"
HOME_DIR=$(cd "$STACK_DIR" && pwd)/redis-cluster
BASE=${REDIS_CLUSTER_PORT:-7100}
NODE_TIMEOUT_MS=${REDIS_CLUSTER_NODE_TIMEOUT_MS:-2000}
REPLICAS=3
SCRIPT_NAME=redis-cluster.sh COMPOSE_PROFILE=cluster
# The helpers (say, die, ensure_redis, cli, ping, pid, until_ok, field, ...): stack/redis-lib.sh.
# shellcheck source=SCRIPTDIR/redis-lib.sh
source "$ROOT/stack/redis-lib.sh"

if ! [[ $BASE =~ ^[0-9]+$ ]] || ((BASE < 1024 || BASE + 5 + 10000 > 65535)); then
  die "REDIS_CLUSTER_PORT=$BASE: want a port from 1024 to 55530 (the cluster bus is on port + 10000)"
fi
[[ $NODE_TIMEOUT_MS =~ ^[1-9][0-9]*$ ]] \
  || die "REDIS_CLUSTER_NODE_TIMEOUT_MS=$NODE_TIMEOUT_MS: want a positive number of milliseconds"
# Seconds to wait for a cluster to form or a node to rejoin (a failover takes 2-3 node timeouts).
SETTLE_S=$((30 + 3 * NODE_TIMEOUT_MS / 1000))
PORTS=()
for ((port = BASE; port < BASE + 6; port++)); do PORTS+=("$port"); done
RANGE="127.0.0.1:$BASE-$((BASE + 5))"

# The same arguments on first start and on restart-node; the node's identity and its view of
# the cluster are in nodes.conf in its own dir. Config on the command line as in redis.sh.
start_node() {
  local port=$1 dir=$HOME_DIR/$1
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes \
    --daemonize yes --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout "$NODE_TIMEOUT_MS" \
    --save "" --appendonly no --repl-diskless-sync-delay 0 \
    --zset-max-listpack-entries 512 --maxmemory-policy noeviction
}

# healthy: every node says cluster_state:ok and knows all six nodes, none of them flagged
# failing, and three replicas have their link to their master up. Else REASON says why.
REASON=
healthy() {
  local port info nodes known failing links=0
  for port in "${PORTS[@]}"; do
    info=$(cli "$port" cluster info 2>/dev/null) || info=
    [[ $info == *cluster_state:* ]] || { REASON="$port does not answer CLUSTER INFO"; return 1; }
    [[ $info == *cluster_state:ok* ]] \
      || { REASON="$port says cluster_state:$(field cluster_state <<<"$info")"; return 1; }
    nodes=$(cli "$port" cluster nodes 2>/dev/null) || { REASON="$port does not answer CLUSTER NODES"; return 1; }
    known=$(awk '$3 !~ /handshake|noaddr/ { n++ } END { print n + 0 }' <<<"$nodes")
    ((known == 6)) || { REASON="$port knows $known of 6 nodes"; return 1; }
    failing=$(awk '$3 ~ /(^|,)fail/ { split($2, a, "[:@]"); printf "%s%s", s, a[2]; s = "," }' <<<"$nodes")
    [[ -z $failing ]] || { REASON="$port flags $failing failing"; return 1; }
    info=$(cli "$port" info replication 2>/dev/null) || { REASON="$port does not answer INFO"; return 1; }
    [[ $(field master_link_status <<<"$info") == up ]] && links=$((links + 1))
  done
  ((links == REPLICAS)) || { REASON="$links of $REPLICAS replicas have their link to their master up"; return 1; }
}

all_state_ok() {
  local port info
  for port in "${PORTS[@]}"; do
    info=$(cli "$port" cluster info 2>/dev/null) && [[ $info == *cluster_state:ok* ]] || return 1
  done
}

# The masters (ports, comma-separated) as the first answering node sees them.
masters() {
  local port nodes
  for port in "${PORTS[@]}"; do
    nodes=$(cli "$port" cluster nodes 2>/dev/null) || continue
    awk '$3 ~ /master/ && $3 !~ /fail/ && NF >= 9 { split($2, a, "[:@]"); print a[2] }' <<<"$nodes" \
      | sort -n | paste -sd, -
    return 0
  done
}

summary() {
  local port n keys=0
  for port in ${1//,/ }; do
    n=$(cli "$port" dbsize 2>/dev/null) && [[ $n =~ ^[0-9]+$ ]] && keys=$((keys + n))
  done
  echo "masters $1, $keys keys"
}

stop_all() {
  local port
  for port in "${PORTS[@]}"; do request_stop "$port"; done
  for port in "${PORTS[@]}"; do wait_stop "$port" "node $port"; done
}

up() {
  local port start=$EPOCHREALTIME busy=() addrs=()
  ensure_redis
  if all_state_ok; then
    until_ok "$SETTLE_S" healthy \
      || die "a cluster answers cluster_state:ok on $RANGE but is not healthy within ${SETTLE_S}s: $REASON"
    say "already up on $RANGE ($(summary "$(masters)"))"
    return 0
  fi
  for port in "${PORTS[@]}"; do
    if pid "$port" >/dev/null; then
      busy+=("$port")
    elif ping "$port"; then
      die "port $port answers, but not from a node of this script (no live pid in $(pidfile "$port")); stop it or set REDIS_CLUSTER_PORT"
    fi
  done
  if ((${#busy[@]} == 6)); then
    # All there: maybe a failover in progress.
    until_ok "$SETTLE_S" healthy && { say "already up on $RANGE ($(summary "$(masters)"))"; return 0; }
    die "all six nodes run but the cluster on $RANGE is not ok within ${SETTLE_S}s ($REASON); 'down' then 'up' for a fresh cluster"
  elif ((${#busy[@]})); then
    healthy || true
    die "only nodes ${busy[*]} run ($REASON); start a stopped node with 'restart-node PORT', or 'down' then 'up' for a fresh cluster"
  fi
  # Leftovers of a cluster that was not shut down with 'down': an old nodes.conf would make
  # a node refuse to join a new cluster.
  rm -rf "$HOME_DIR"
  for port in "${PORTS[@]}"; do
    start_node "$port"
    addrs+=("127.0.0.1:$port")
  done
  for port in "${PORTS[@]}"; do
    until_ok 5 ping "$port" || fail_up "node $port did not answer PING within 5s" "$HOME_DIR/$port/redis.log"
  done
  # Slots split in three, one replica per master (chosen by redis-cli).
  timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$HOME_DIR/create.log" 2>&1 \
    || fail_up "redis-cli --cluster create failed (log: $HOME_DIR/create.log)" "$HOME_DIR/create.log"
  until_ok "$SETTLE_S" healthy || fail_up "the cluster was not ok within ${SETTLE_S}s: $REASON" "$HOME_DIR/create.log"
  say "up on $RANGE in $(since "$start")s ($(summary "$(masters)"), node timeout ${NODE_TIMEOUT_MS}ms, redis $(redis_version))"
}

down() {
  local port running=()
  for port in "${PORTS[@]}"; do
    pid "$port" >/dev/null && running+=("$port")
  done
  stop_all
  rm -rf "$HOME_DIR"
  if ((${#running[@]})); then
    say "stopped ${#running[@]} nodes (${running[*]}), removed $HOME_DIR"
  else
    say "not running (from $HOME_DIR)"
  fi
}

# rejoined PORT: the node answers, sees cluster_state:ok and all six nodes, has its link up
# if it is a replica, and no node that answers still flags it failing. Else REASON says why.
rejoined() {
  local port=$1 other info nodes id role
  info=$(cli "$port" cluster info 2>/dev/null) || info=
  [[ $info == *cluster_state:ok* ]] || { REASON="$port does not say cluster_state:ok yet"; return 1; }
  nodes=$(cli "$port" cluster nodes 2>/dev/null) || { REASON="$port does not answer CLUSTER NODES"; return 1; }
  [[ $(awk '$3 !~ /handshake|noaddr/ { n++ } END { print n + 0 }' <<<"$nodes") == 6 ]] \
    || { REASON="$port does not know all 6 nodes yet"; return 1; }
  # Right after a restart a former master still calls itself master until the others tell it
  # who took over its slots; cluster_state:ok comes only after that (2 s writable delay).
  info=$(cli "$port" info replication 2>/dev/null) || { REASON="$port does not answer INFO"; return 1; }
  role=$(field role <<<"$info")
  if [[ $role == slave ]]; then
    [[ $(field master_link_status <<<"$info") == up ]] || { REASON="$port: link to its master not up yet"; return 1; }
  fi
  id=$(awk '$3 ~ /myself/ { print $1 }' <<<"$nodes")
  for other in "${PORTS[@]}"; do
    [[ $other == "$port" ]] && continue
    nodes=$(cli "$other" cluster nodes 2>/dev/null) || continue  # a node that is down too
    awk -v id="$id" '$1 == id && $3 ~ /(^|,)fail/ { bad = 1 } END { exit bad }' <<<"$nodes" \
      || { REASON="$other still flags $port failing"; return 1; }
  done
}

# failed_over PORT (a stopped node): true unless the others still see it as the master of
# slots that a live replica of it could take over (REASON: that replica's port).
failed_over() {
  local port=$1 other nodes id
  id=$(awk '$3 ~ /myself/ { print $1 }' "$HOME_DIR/$port/nodes.conf")
  for other in "${PORTS[@]}"; do
    [[ $other == "$port" ]] && continue
    nodes=$(cli "$other" cluster nodes 2>/dev/null) || continue
    REASON=$(awk -v id="$id" '
      $1 == id && $3 ~ /master/ && NF >= 9 { owns = 1 }
      $4 == id && $3 !~ /(^|,)fail/ { split($2, a, "[:@]"); replica = a[2] }
      END { if (owns && replica) print replica }' <<<"$nodes")
    [[ -z $REASON ]]
    return
  done
}

restart_node() {
  local port=${1:-} p start=$EPOCHREALTIME role
  [[ -n $port ]] || die "usage: $0 restart-node PORT"
  [[ " ${PORTS[*]} " == *" $port "* ]] || die "$port is not a port of this cluster ($RANGE)"
  ensure_redis
  [[ -f $HOME_DIR/$port/nodes.conf ]] || die "no cluster state for $port ($HOME_DIR/$port/nodes.conf); run 'up' first"
  p=$(restart_pid node "$port") || exit
  if [[ -n $p ]]; then
    say "node $port is running (pid $p): not restarted, checking it is in the cluster"
  else
    # No persistence: a master that comes back before its replica took over its slots is
    # still their master, empty, and its replica copies that. Let the failover happen first.
    failed_over "$port" || say "waiting for replica $REASON to take over the slots of $port first"
    if ! until_ok "$SETTLE_S" failed_over "$port"; then
      die "node $port still owns slots after ${SETTLE_S}s while its replica $REASON runs; not restarted (it would come back empty)"
    fi
    start_node "$port"
    until_ok 5 ping "$port" || { tail -n 20 "$HOME_DIR/$port/redis.log" >&2 || true; die "node $port did not answer PING within 5s (log: $HOME_DIR/$port/redis.log)"; }
  fi
  until_ok "$SETTLE_S" rejoined "$port" || die "node $port did not rejoin within ${SETTLE_S}s: $REASON"
  role=$(field role <<<"$(cli "$port" info replication)")
  [[ $role == slave ]] && role="replica of $(field master_port <<<"$(cli "$port" info replication)")"
  say "node $port in the cluster as $role after $(since "$start")s (pid $(pid "$port"))"
}

status() {
  local port answering=0
  need_cli
  if healthy; then
    echo "redis-cluster: ok on $RANGE ($(summary "$(masters)"))"
    return 0
  fi
  for port in "${PORTS[@]}"; do
    { pid "$port" >/dev/null || ping "$port"; } && answering=$((answering + 1))
  done
  if ((answering == 0)); then
    echo "redis-cluster: stopped"
  else
    echo "redis-cluster: not ok on $RANGE ($answering of 6 nodes up): $REASON"
  fi
  return 1
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  restart-node) restart_node "${2:-}" ;;
  *) echo "usage: $0 up|down|status|restart-node PORT" >&2; exit 2 ;;
esac
