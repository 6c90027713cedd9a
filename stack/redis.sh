#!/usr/bin/env bash
# Local Redis for the feature state, using the system's redis-server. It is a cache:
# no RDB/AOF persistence, features are rebuilt by replay. State under $STACK_DIR/redis.
#
#   bash stack/redis.sh up|down|status
#
# Env: REDIS_PORT (6379), STACK_DIR (.stack), REDIS_MAXMEMORY (0 = unlimited).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STACK_DIR=${STACK_DIR:-.stack}
mkdir -p "$STACK_DIR/redis"
HOME_DIR=$(cd "$STACK_DIR/redis" && pwd)
REDIS_PORT=${REDIS_PORT:-6379}
PIDFILE=$HOME_DIR/redis.pid
SCRIPT_NAME=redis.sh COMPOSE_PROFILE=
# The helpers (say, die, ensure_redis, alive, pid, ...): stack/redis-lib.sh.
# shellcheck source=SCRIPTDIR/redis-lib.sh
source "$ROOT/stack/redis-lib.sh"
# One server: one pid file, and cli and ping without a port argument (nor a time limit).
pidfile() { echo "$PIDFILE"; }
cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
ping() { [[ $(cli ping 2>/dev/null) == PONG ]]; }

up() {
  ensure_redis
  if ping; then
    say "already answering on 127.0.0.1:$REDIS_PORT"
    return 0
  fi
  # Config on the command line: nothing to keep in sync on disk. The Debian package's
  # own service (if any) uses /etc/redis and the same default port; stop it or set REDIS_PORT.
  # zset-max-listpack-entries 512 (as hashes have by default): a busy card's history zset
  # (over 128 entries at some point) would otherwise turn into a skiplist of ~15x the size
  # and never turn back; Redis' memory then creeps up for weeks (make soak found it).
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --daemonize yes --dir "$HOME_DIR" --pidfile "$PIDFILE" --logfile "$HOME_DIR/redis.log" \
    --save "" --appendonly no --zset-max-listpack-entries 512 \
    --maxmemory "${REDIS_MAXMEMORY:-0}" --maxmemory-policy noeviction
  for _ in $(seq 50); do
    ping && { say "up on 127.0.0.1:$REDIS_PORT (redis $(redis_version))"; return 0; }
    sleep 0.1
  done
  tail -n 20 "$HOME_DIR/redis.log" >&2 || true
  die "redis-server did not answer PING within 5s (log: $HOME_DIR/redis.log)"
}

down() {
  local p
  if ! p=$(pid "$REDIS_PORT"); then
    rm -f "$PIDFILE"
    say "not running (from $HOME_DIR)"
    return 0
  fi
  # 'shutdown nosave': no persistence configured anyway; never write a dump on the way out.
  cli shutdown nosave >/dev/null 2>&1 || kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 50); do
    alive "$p" || { rm -f "$PIDFILE"; say "stopped"; return 0; }
    sleep 0.1
  done
  kill -KILL "$p"
  rm -f "$PIDFILE"
  warn "killed (did not stop within 5s)"
}

status() {
  local p
  need_cli
  p=$(pid "$REDIS_PORT") || true
  if ping; then
    echo "redis: running${p:+ (pid $p)} on 127.0.0.1:$REDIS_PORT, $(cli dbsize) keys"
  else
    echo "redis: stopped"
    return 1
  fi
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
