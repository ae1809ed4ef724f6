#!/usr/bin/env bash
# A local AWS KMS-compatible server (moto) on loopback, for the `aws-kms` feature's tests.
#
#   scripts/moto.sh start   install moto if missing, start it in the background, wait until it
#                           answers, print its URL (does nothing but print it if already up)
#   scripts/moto.sh stop    stop it
#   scripts/moto.sh url     print its URL
#
# Port: $SEALDB_MOTO_PORT, default 5599. It listens on 127.0.0.1 only.
# Example:
#   scripts/moto.sh start
#   SEALDB_TEST_KMS_ENDPOINT=$(scripts/moto.sh url) \
#       cargo test -p sealdb-crypto --features aws-kms --test aws_kms
#   scripts/moto.sh stop
set -euo pipefail

PORT="${SEALDB_MOTO_PORT:-5599}"
HOST=127.0.0.1
URL="http://${HOST}:${PORT}"
RUN_DIR="${TMPDIR:-/tmp}"
PID_FILE="${RUN_DIR}/sealdb-moto-${PORT}.pid"
LOG_FILE="${RUN_DIR}/sealdb-moto-${PORT}.log"
PYTHON="${PYTHON:-python3}"
# How long `start` waits for the server to answer: 60 tries, 0.5 s apart (30 s).
TRIES=60

answers() {
    if command -v curl >/dev/null 2>&1; then
        curl --silent --output /dev/null --max-time 2 "${URL}/"
    else
        "$PYTHON" - "$URL" <<'EOF'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=2)
except urllib.error.HTTPError:
    pass  # it answered
except Exception:
    sys.exit(1)
EOF
    fi
}

running_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

ensure_moto() {
    if "$PYTHON" -c 'import sys, moto, moto.server
sys.exit(0 if moto.__version__.startswith("5.") else 1)' 2>/dev/null; then
        return
    fi
    echo "moto.sh: installing moto[server] 5.x" >&2
    # A distribution's own Python may refuse system-wide installs (PEP 668): then as the user.
    "$PYTHON" -m pip install --quiet 'moto[server]==5.*' >&2 ||
        "$PYTHON" -m pip install --quiet --user --break-system-packages 'moto[server]==5.*' >&2
}

start() {
    if running_pid >/dev/null && answers; then
        echo "$URL"
        return
    fi
    ensure_moto
    # Run it through the interpreter (not the `moto_server` entry point, which a fresh pip
    # install may have put outside PATH).
    nohup "$PYTHON" -m moto.server -H "$HOST" -p "$PORT" >"$LOG_FILE" 2>&1 &
    local pid=$!
    echo "$pid" >"$PID_FILE"
    for ((i = 0; i < TRIES; i++)); do
        if answers; then
            echo "$URL"
            return
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "moto.sh: moto exited; its log ($LOG_FILE):" >&2
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            exit 1
        fi
        sleep 0.5
    done
    echo "moto.sh: moto did not answer at $URL within $((TRIES / 2)) s; log: $LOG_FILE" >&2
    kill "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
    exit 1
}

stop() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "$URL" ;;
    *)
        echo "usage: $0 start|stop|url" >&2
        exit 2
        ;;
esac
