# shellcheck shell=bash
# Helpers for the scripts that run the system's redis-server (stack/redis.sh,
# stack/redis-cluster.sh, stack/redis-sentinel.sh). Sourced, never run. Set before sourcing:
#   SCRIPT_NAME      the script's name: the prefix of what say, warn and die print
#   COMPOSE_PROFILE  the docker compose profile with the same setup, named when redis-server
#                    is missing ('': the default services)
#   HOME_DIR         the script's state dir: one dir per port in it, with that process's pid
#                    file (redis.pid); a script with another layout redefines pidfile after
#                    sourcing (stack/redis.sh: one server, one pid file)
: "${SCRIPT_NAME:?set SCRIPT_NAME before sourcing redis-lib.sh}"
: "${COMPOSE_PROFILE?set COMPOSE_PROFILE before sourcing redis-lib.sh}"
: "${HOME_DIR:?set HOME_DIR before sourcing redis-lib.sh}"

say() { echo "$SCRIPT_NAME: $*"; }
warn() { echo "$SCRIPT_NAME: $*" >&2; }
die() { warn "$@"; exit 1; }

ensure_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  if [[ $(id -u) -eq 0 && -f /etc/debian_version ]]; then
    say "installing redis-server with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
  else
    die "redis-server not found; install it (Debian/Ubuntu: sudo apt-get install redis-server) or use 'docker compose ${COMPOSE_PROFILE:+--profile $COMPOSE_PROFILE }up'"
  fi
}

need_cli() { command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-server)"; }
redis_version() { redis-server --version | cut -d' ' -f3 | cut -d= -f2; }

# cli PORT ARGS...: one command to one process; a stopped (SIGSTOP) one must not hang us.
cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
ping() { [[ $(cli "$1" ping 2>/dev/null) == PONG ]]; }
# A process that exited but is not yet reaped (zombie; the daemon's parent is PID 1) counts as gone.
alive() { kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }
dead() { ! alive "$1"; }
pidfile() { echo "$HOME_DIR/$1/redis.pid"; }
# pid PORT: our process on PORT = alive and still a redis-server (guards against a recycled pid).
pid() {
  local p
  p=$(cat "$(pidfile "$1")" 2>/dev/null) && alive "$p" && grep -qs '^redis-server' "/proc/$p/comm" && echo "$p"
}
# until_ok SECONDS CMD...: run CMD every 0.05 s until it succeeds; fails after SECONDS.
until_ok() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 0.05
  done
}
since() { awk -v a="${1/,/.}" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.1f", b - a }'; }  # since T0
field() { sed -n "s/^$1:\([^[:space:]]*\).*/\1/p"; }  # field NAME < INFO-style text

# request_stop PORT: ask our process on PORT to exit (no dump on the way out), without waiting.
request_stop() {
  local p out
  p=$(pid "$1") || return 0
  # NOW: do not wait for lagging replicas (Redis 7); an older redis-server refuses it: TERM.
  out=$(cli "$1" shutdown nosave now 2>&1) || true
  [[ -z $out ]] || kill -TERM "$p" 2>/dev/null || true
}

# wait_stop PORT [NAME]: wait until our process on PORT is gone (5 s, then KILL, said as
# "NAME killed"; NAME: PORT); drop its pid file.
wait_stop() {
  local p
  if p=$(pid "$1") && ! until_ok 5 dead "$p"; then
    kill -KILL "$p" 2>/dev/null || true
    warn "${2:-$1} killed (did not stop within 5s)"
  fi
  rm -f "$(pidfile "$1")"
}

# fail_up MESSAGE LOG: a failed start: show LOG's end, stop what was started (the script's
# stop_all), keep the dir (logs) for a look (the next up starts from scratch anyway), die.
fail_up() {
  tail -n 20 "$2" >&2 2>/dev/null || true
  stop_all
  die "$1 (logs: $HOME_DIR/*/redis.log)"
}

# restart_pid WHAT PORT: before starting a stopped (killed) process on PORT again: the pid of
# ours if it still runs and answers (nothing if it is gone); dies if it runs but does not
# answer, or if another process answers on PORT. WHAT: what the script calls it ("node").
# In $(...): p=$(restart_pid node "$port") || exit
restart_pid() {
  local what=$1 port=$2 p
  if p=$(pid "$port"); then
    # A process just killed may not have exited yet: give it a moment.
    if ! ping "$port" && until_ok 5 dead "$p"; then
      return 0
    elif ! ping "$port"; then
      die "$what $port (pid $p) runs but does not answer PING"
    fi
    echo "$p"
  elif ping "$port"; then
    die "port $port answers, but not from a $what of this script (no live pid in $(pidfile "$port"))"
  fi
}
