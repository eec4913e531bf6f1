#!/usr/bin/env bash
# Start/stop a local Prefect server (SQLite under $PREFECT_HOME) and serve aemg's deployments.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PREFECT_PORT:-4200}"
HOME_DIR="${PREFECT_HOME:-$(pwd)/.prefect}"
BIN="$(pwd)/.venv/bin"
API="http://127.0.0.1:${PORT}/api"
mkdir -p "$HOME_DIR"
export PREFECT_HOME="$HOME_DIR" PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1

wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || return 1
    sleep 1
  done
}

stop_pid() {  # stop the process group whose leader's pid is in file $1
  local file="$1"
  [[ -f "$file" ]] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    wait_for 20 bash -c "! kill -0 $pid" || kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

case "${1:-}" in
  start)
    if [[ -f "$HOME_DIR/server.pid" ]] && kill -0 "$(cat "$HOME_DIR/server.pid")" 2>/dev/null; then
      echo "Prefect server already running (pid $(cat "$HOME_DIR/server.pid")); run 'make stop' first" >&2; exit 1
    fi
    setsid "$BIN/prefect" server start --host 127.0.0.1 --port "$PORT" >"$HOME_DIR/server.log" 2>&1 &
    echo $! >"$HOME_DIR/server.pid"
    wait_for 90 curl -sf "$API/health" || { echo "server did not start; see $HOME_DIR/server.log" >&2; exit 1; }
    PREFECT_API_URL="$API" setsid "$BIN/python" -m aemg.flows.serve >"$HOME_DIR/serve.log" 2>&1 &
    echo $! >"$HOME_DIR/serve.pid"
    PREFECT_API_URL="$API" wait_for 90 "$BIN/python" -m aemg.flows.serve --check \
      || { echo "deployments not ready; see $HOME_DIR/serve.log" >&2; exit 1; }
    echo "Prefect server on $API with aemg deployments served."
    echo "  PREFECT_API_URL=$API $BIN/prefect deployment run harmonize/harmonize --watch"
    ;;
  stop)
    stop_pid "$HOME_DIR/serve.pid"
    stop_pid "$HOME_DIR/server.pid"
    echo "stopped"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
