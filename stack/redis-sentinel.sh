#!/usr/bin/env bash
# Local Redis Sentinel setup for the sentinel tests, using the system's redis-server: a master
# and one replica, watched by three sentinels (redis-server sentinel.conf --sentinel: no
# redis-sentinel package needed), all on 127.0.0.1. The servers are a cache like
# stack/redis.sh: no RDB/AOF persistence, never evict. State under $STACK_DIR/redis-sentinel.
#
#   bash stack/redis-sentinel.sh up|down|status
#   bash stack/redis-sentinel.sh restart-server PORT   start a stopped (killed) server again,
#                                                      as a replica of the current master
#
# Env: REDIS_SENTINEL_PORT (7120: the first master; its replica on +1, the sentinels on
#      +6, +7, +8), REDIS_SENTINEL_MASTER (fraud: the service name clients ask for),
#      REDIS_SENTINEL_DOWN_AFTER_MS (1000), STACK_DIR (.stack).
# Quorum 2 of 3, failover-timeout 5000 ms: a dead master is replaced after ~2-3 s.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STACK_DIR=${STACK_DIR:-.stack}
mkdir -p "$STACK_DIR"
HOME_DIR=$(cd "$STACK_DIR" && pwd)/redis-sentinel
BASE=${REDIS_SENTINEL_PORT:-7120}
NAME=${REDIS_SENTINEL_MASTER:-fraud}
DOWN_AFTER_MS=${REDIS_SENTINEL_DOWN_AFTER_MS:-1000}
FAILOVER_TIMEOUT_MS=5000
QUORUM=2
SCRIPT_NAME=redis-sentinel.sh COMPOSE_PROFILE=sentinel
# The helpers (say, die, ensure_redis, cli, ping, pid, until_ok, field, ...): stack/redis-lib.sh.
# shellcheck source=SCRIPTDIR/redis-lib.sh
source "$ROOT/stack/redis-lib.sh"

if ! [[ $BASE =~ ^[0-9]+$ ]] || ((BASE < 1024 || BASE + 8 > 65535)); then
  die "REDIS_SENTINEL_PORT=$BASE: want a port from 1024 to 65527"
fi
[[ $NAME =~ ^[A-Za-z0-9._-]+$ ]] || die "REDIS_SENTINEL_MASTER=$NAME: want letters, digits and . _ - only"
[[ $DOWN_AFTER_MS =~ ^[1-9][0-9]*$ ]] \
  || die "REDIS_SENTINEL_DOWN_AFTER_MS=$DOWN_AFTER_MS: want a positive number of milliseconds"
SERVERS=("$BASE" "$((BASE + 1))")
SENTINELS=("$((BASE + 6))" "$((BASE + 7))" "$((BASE + 8))")
# Seconds to wait for the setup to settle or a failover to happen.
SETTLE_S=$((30 + 3 * (DOWN_AFTER_MS + FAILOVER_TIMEOUT_MS) / 1000))

value() { awk -v k="$1" 'prev == k { print; exit } { prev = $0 }'; }  # value KEY < SENTINEL reply

# start_server PORT [MASTER_PORT]: the same arguments on first start and on restart-server.
start_server() {
  local port=$1 dir=$HOME_DIR/$1 replicaof=()
  [[ -n ${2:-} ]] && replicaof=(--replicaof 127.0.0.1 "$2")
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes \
    --daemonize yes --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --save "" --appendonly no --repl-diskless-sync-delay 0 \
    --zset-max-listpack-entries 512 --maxmemory-policy noeviction "${replicaof[@]}"
}

# A sentinel rewrites its own config file (what it learned: replicas, other sentinels,
# failovers), so each has its own, written once at up.
start_sentinel() {
  local port=$1 dir=$HOME_DIR/$1
  mkdir -p "$dir"
  cat >"$dir/sentinel.conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
dir $dir
pidfile $dir/redis.pid
logfile $dir/redis.log
sentinel monitor $NAME 127.0.0.1 $BASE $QUORUM
sentinel down-after-milliseconds $NAME $DOWN_AFTER_MS
sentinel failover-timeout $NAME $FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $NAME 1
CONF
  redis-server "$dir/sentinel.conf" --sentinel
}

# master_port: the master's port as the first answering sentinel names it.
master_port() {
  local s addr
  for s in "${SENTINELS[@]}"; do
    addr=$(cli "$s" sentinel get-master-addr-by-name "$NAME" 2>/dev/null) || continue
    [[ $addr =~ ^127\.0\.0\.1$'\n'([0-9]+)$ ]] && { echo "${BASH_REMATCH[1]}"; return 0; }
  done
  return 1
}

# healthy: all three sentinels name the same master, see it up, one replica up with its link
# up and the two other sentinels; the servers agree. Else REASON says why.
REASON=
MASTER=
healthy() {
  local s reply flags master='' replica info
  for s in "${SENTINELS[@]}"; do
    reply=$(cli "$s" sentinel master "$NAME" 2>/dev/null) || reply=
    [[ -n $(value port <<<"$reply") ]] || { REASON="sentinel $s does not answer SENTINEL MASTER $NAME"; return 1; }
    flags=$(value flags <<<"$reply")
    [[ $flags == master ]] || { REASON="sentinel $s flags the master $flags"; return 1; }
    [[ -z $master || $master == "$(value port <<<"$reply")" ]] \
      || { REASON="the sentinels disagree on the master ($master, $(value port <<<"$reply"))"; return 1; }
    master=$(value port <<<"$reply")
    [[ $(value num-slaves <<<"$reply") == 1 ]] \
      || { REASON="sentinel $s knows $(value num-slaves <<<"$reply") replicas, not 1"; return 1; }
    [[ $(value num-other-sentinels <<<"$reply") == 2 ]] \
      || { REASON="sentinel $s knows $(value num-other-sentinels <<<"$reply") other sentinels, not 2"; return 1; }
    reply=$(cli "$s" sentinel replicas "$NAME" 2>/dev/null) || reply=
    flags=$(value flags <<<"$reply")
    [[ $flags == slave && $(value master-link-status <<<"$reply") == ok ]] \
      || { REASON="sentinel $s sees the replica as ${flags:-nothing}, link $(value master-link-status <<<"$reply")"; return 1; }
  done
  [[ " ${SERVERS[*]} " == *" $master "* ]] || { REASON="the sentinels name 127.0.0.1:$master master"; return 1; }
  replica=$((master == BASE ? BASE + 1 : BASE))
  info=$(cli "$master" info replication 2>/dev/null) || info=
  [[ $(field role <<<"$info") == master ]] || { REASON="$master is not a master"; return 1; }
  info=$(cli "$replica" info replication 2>/dev/null) || info=
  [[ $(field master_port <<<"$info") == "$master" && $(field master_link_status <<<"$info") == up ]] \
    || { REASON="$replica has no link up to $master"; return 1; }
  MASTER=$master
}

# The sentinels first: none of them fails over while the servers go.
stop_all() {
  local port
  for port in "${SENTINELS[@]}"; do request_stop "$port"; done
  for port in "${SENTINELS[@]}"; do wait_stop "$port"; done
  for port in "${SERVERS[@]}"; do request_stop "$port"; done
  for port in "${SERVERS[@]}"; do wait_stop "$port"; done
}

up() {
  local port start=$EPOCHREALTIME busy=() info
  ensure_redis
  if healthy; then
    say "already up: $(summary)"
    return 0
  fi
  for port in "${SERVERS[@]}" "${SENTINELS[@]}"; do
    if pid "$port" >/dev/null; then
      busy+=("$port")
    elif ping "$port"; then
      die "port $port answers, but not from a process of this script (no live pid in $(pidfile "$port")); stop it or set REDIS_SENTINEL_PORT"
    fi
  done
  if ((${#busy[@]} == 5)); then
    # All there: maybe just started, or a failover in progress.
    until_ok "$SETTLE_S" healthy && { say "already up: $(summary)"; return 0; }
    die "all five run but the setup is not ok within ${SETTLE_S}s ($REASON); 'down' then 'up' for a fresh one"
  elif ((${#busy[@]})); then
    die "only ${busy[*]} run ($REASON); start a stopped server with 'restart-server PORT', or 'down' then 'up'"
  fi
  rm -rf "$HOME_DIR"  # leftovers of a setup not stopped with 'down' (sentinel.conf rewritten by failovers)
  start_server "$BASE"
  start_server "$((BASE + 1))" "$BASE"
  for port in "${SERVERS[@]}"; do
    until_ok 5 ping "$port" || fail_up "server $port did not answer PING within 5s" "$HOME_DIR/$port/redis.log"
  done
  replica_link_up() {
    info=$(cli "$((BASE + 1))" info replication 2>/dev/null) && [[ $(field master_link_status <<<"$info") == up ]]
  }
  until_ok 10 replica_link_up || fail_up "replica $((BASE + 1)) did not sync from $BASE within 10s" "$HOME_DIR/$((BASE + 1))/redis.log"
  for port in "${SENTINELS[@]}"; do start_sentinel "$port"; done
  for port in "${SENTINELS[@]}"; do
    until_ok 5 ping "$port" || fail_up "sentinel $port did not answer PING within 5s" "$HOME_DIR/$port/redis.log"
  done
  until_ok "$SETTLE_S" healthy || fail_up "not ok within ${SETTLE_S}s: $REASON" "$HOME_DIR/${SENTINELS[0]}/redis.log"
  say "up in $(since "$start")s: $(summary), down-after ${DOWN_AFTER_MS}ms, redis $(redis_version)"
}

# After a successful healthy: MASTER is set.
summary() {
  local n
  n=$(cli "$MASTER" dbsize 2>/dev/null) || n='?'
  echo "service $NAME, master 127.0.0.1:$MASTER, replica $((MASTER == BASE ? BASE + 1 : BASE)), sentinels $(IFS=,; echo "${SENTINELS[*]}"), $n keys"
}

down() {
  local port running=()
  for port in "${SERVERS[@]}" "${SENTINELS[@]}"; do
    pid "$port" >/dev/null && running+=("$port")
  done
  stop_all
  rm -rf "$HOME_DIR"
  if ((${#running[@]})); then
    say "stopped ${running[*]}, removed $HOME_DIR"
  else
    say "not running (from $HOME_DIR)"
  fi
}

restart_server() {
  local port=${1:-} p start=$EPOCHREALTIME master=''
  [[ -n $port ]] || die "usage: $0 restart-server PORT"
  [[ " ${SERVERS[*]} " == *" $port "* ]] || die "$port is not a server port of this setup (${SERVERS[*]})"
  ensure_redis
  [[ -d $HOME_DIR/$port ]] || die "no state for $port ($HOME_DIR/$port); run 'up' first"
  p=$(restart_pid server "$port") || exit
  if [[ -n $p ]]; then
    say "server $port is running (pid $p): not restarted, checking the setup"
  else
    # The master now, as the sentinels name it. While they still name the dead server, its
    # replica has not been promoted yet: wait for that (a master without persistence that
    # came back would be empty, and its replica would copy that).
    new_master() {
      master=$(master_port) && [[ $master != "$port" ]] \
        && [[ $(field role <<<"$(cli "$master" info replication 2>/dev/null)") == master ]]
    }
    if ! new_master; then
      master_port >/dev/null || die "no sentinel answers on ${SENTINELS[*]}; run 'up' first"
      say "waiting for the sentinels to promote a new master (they name 127.0.0.1:$(master_port))"
      until_ok "$SETTLE_S" new_master || die "the sentinels still name 127.0.0.1:${master:-?} master after ${SETTLE_S}s; not restarted"
    fi
    start_server "$port" "$master"
    until_ok 5 ping "$port" || { tail -n 20 "$HOME_DIR/$port/redis.log" >&2 || true; die "server $port did not answer PING within 5s (log: $HOME_DIR/$port/redis.log)"; }
  fi
  until_ok "$SETTLE_S" healthy || die "server $port runs, but the setup is not ok within ${SETTLE_S}s: $REASON"
  say "server $port is the replica of 127.0.0.1:$MASTER after $(since "$start")s (pid $(pid "$port")); $(summary)"
}

status() {
  local port answering=0
  need_cli
  if healthy; then
    echo "redis-sentinel: ok, $(summary)"
    return 0
  fi
  for port in "${SERVERS[@]}" "${SENTINELS[@]}"; do
    { pid "$port" >/dev/null || ping "$port"; } && answering=$((answering + 1))
  done
  if ((answering == 0)); then
    echo "redis-sentinel: stopped"
  else
    echo "redis-sentinel: not ok ($answering of 5 processes up): $REASON"
  fi
  return 1
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  restart-server) restart_server "${2:-}" ;;
  *) echo "usage: $0 up|down|status|restart-server PORT" >&2; exit 2 ;;
esac
