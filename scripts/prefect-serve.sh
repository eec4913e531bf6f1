#!/usr/bin/env bash
# Start/stop a local Prefect server (SQLite under $PREFECT_HOME) and serve aemg's deployments.
#
#   scripts/prefect-serve.sh start   # server on 127.0.0.1:$PREFECT_PORT (4200), then serve; returns when ready
#   scripts/prefect-serve.sh stop    # stop serve (and its flow runs, Dask workers), then the server
#   scripts/prefect-serve.sh status
#
# Flow runs execute as children of the serve process, in $AEMG_SERVE_DIR (default: the repository
# root, so they read ./params.yaml and write ./data like the CLI), with the caller's environment:
# `AEMG_MIRROR=http://127.0.0.1:8765 make serve` makes every served run download from that mirror.
# Logs and pid files: $PREFECT_HOME/{server,serve}.{log,pid}. Other knobs: PREFECT_PORT (4200),
# AEMG_VENV_BIN (.venv/bin), AEMG_SERVE_TIMEOUT (seconds to wait for readiness, 120).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PREFECT_PORT:-4200}"
HOME_DIR="${PREFECT_HOME:-$(pwd)/.prefect}"
REPO="$(pwd)"
BIN="${AEMG_VENV_BIN:-$REPO/.venv/bin}"
SERVE_DIR="$(cd "${AEMG_SERVE_DIR:-$REPO}" && pwd)"
API="http://127.0.0.1:${PORT}/api"
START_TIMEOUT="${AEMG_SERVE_TIMEOUT:-120}"
mkdir -p "$HOME_DIR"
HOME_DIR="$(cd "$HOME_DIR" && pwd)"
export PREFECT_HOME="$HOME_DIR" PREFECT_API_URL="$API"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1
export PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT="$PORT"
SERVER_PID="$HOME_DIR/server.pid"
SERVE_PID="$HOME_DIR/serve.pid"

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
healthy() { curl -sf -m 2 "$API/health" >/dev/null 2>&1; }

descendants() {  # all descendants of pid $1, deepest last
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

ours() {  # ours PID PATTERN: the pid still runs the command we started (not a reused pid)
  ps -o args= -p "$1" 2>/dev/null | grep -q -- "$2"
}

stop_tree() {  # stop_tree PIDFILE NAME PATTERN: TERM the process group and every descendant, KILL what stays
  local file="$1" name="$2" pattern="$3" pid pids p deadline
  [[ -f "$file" ]] || return 0
  pid=$(cat "$file")
  if alive "$pid" && ours "$pid" "$pattern"; then
    # Collect the tree first: once the leader dies its children are re-parented and lost.
    pids="$pid $(descendants "$pid" | tr '\n' ' ')"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for p in $pids; do  # descendants that left the group (a new session) get their own SIGTERM
      [[ "$(ps -o pgid= -p "$p" 2>/dev/null | tr -d ' ')" == "$pid" ]] || kill -TERM "$p" 2>/dev/null || true
    done
    deadline=$((SECONDS + 20))
    while (( SECONDS < deadline )); do
      local left=""
      for p in $pids; do alive "$p" && left="$left $p"; done
      [[ -z "$left" ]] && break
      sleep 0.2
    done
    for p in $pids; do
      if alive "$p"; then
        echo "$name: pid $p ignored SIGTERM for 20 s; killing it" >&2
        kill -KILL "$p" 2>/dev/null || true
      fi
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

stop_all() {
  stop_tree "$SERVE_PID" serve "aemg.flows.serve"  # serve first: it reports its runs to the server
  stop_tree "$SERVER_PID" server "prefect server start"
}

fail_start() {
  echo "aemg serve: $1; see $2" >&2
  tail -n 20 "$2" >&2 || true
  stop_all >/dev/null
  exit 1
}

case "${1:-}" in
  start)
    if alive "$(cat "$SERVER_PID" 2>/dev/null || true)" || alive "$(cat "$SERVE_PID" 2>/dev/null || true)"; then
      echo "aemg serve: already running (pids in $HOME_DIR); run 'make stop' first" >&2; exit 1
    fi
    rm -f "$SERVER_PID" "$SERVE_PID"
    if healthy; then
      echo "aemg serve: another Prefect server already answers on $API; stop it or set PREFECT_PORT" >&2; exit 1
    fi
    [[ -x "$BIN/prefect" ]] || { echo "aemg serve: $BIN/prefect not found; run 'make install'" >&2; exit 1; }

    setsid "$BIN/prefect" server start --host 127.0.0.1 --port "$PORT" >"$HOME_DIR/server.log" 2>&1 </dev/null &
    echo $! >"$SERVER_PID"
    deadline=$((SECONDS + START_TIMEOUT))
    until healthy; do
      alive "$(cat "$SERVER_PID")" || fail_start "the Prefect server exited" "$HOME_DIR/server.log"
      (( SECONDS < deadline )) || fail_start "the Prefect server did not answer within ${START_TIMEOUT} s" "$HOME_DIR/server.log"
      sleep 0.5
    done

    (cd "$SERVE_DIR" && exec setsid "$BIN/python" -m aemg.flows.serve --prefect-yaml "$REPO/prefect.yaml" \
      >"$HOME_DIR/serve.log" 2>&1 </dev/null) &
    echo $! >"$SERVE_PID"
    (cd "$SERVE_DIR" && "$BIN/python" -m aemg.flows.serve --prefect-yaml "$REPO/prefect.yaml" \
      --check --wait "$(( deadline - SECONDS > 10 ? deadline - SECONDS : 10 ))" --pid "$(cat "$SERVE_PID")") \
      || fail_start "the deployments did not become ready" "$HOME_DIR/serve.log"
    echo "Prefect server on $API (UI http://127.0.0.1:$PORT); flow runs execute in $SERVE_DIR."
    echo "  PREFECT_API_URL=$API $BIN/prefect deployment run harmonize/harmonize --watch"
    echo "  make stop   # logs: $HOME_DIR/server.log, $HOME_DIR/serve.log"
    ;;
  stop)
    stop_all
    echo "stopped"
    ;;
  status)
    for f in "$SERVER_PID" "$SERVE_PID"; do
      if alive "$(cat "$f" 2>/dev/null || true)"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"
      else echo "$(basename "$f" .pid): stopped"; fi
    done
    healthy && echo "api: $API healthy" || echo "api: $API not answering"
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
