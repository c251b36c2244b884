# shellcheck shell=bash
# Helpers shared by scripts/container-test.sh and scripts/container-test-replicas.sh (sourced, not run).
# The caller sets `tmp` (a private directory) before using them, and `base` (http://host:port) for `http`.

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*"; }
pass() { printf 'PASS: %s\n' "$*"; }
# fail MESSAGE: exits non-zero; the caller's EXIT trap prints logs and cleans up.
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  failed=1
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# http_to BASE METHOD PATH [JSON]: the body goes to $tmp/body, the status code to stdout ("000" when unreachable).
http_to() {
  local url=$1 method=$2 path=$3 data=${4-}
  local args=(-sS --noproxy '*' --max-time 5 -o "$tmp/body" -w '%{http_code}' -X "$method") code
  [ -z "$data" ] || args+=(-H 'Content-Type: application/json' --data "$data")
  : >"$tmp/body"
  code=$(curl "${args[@]}" "$url$path" 2>/dev/null) || true
  echo "${code:-000}"
}

# http METHOD PATH [JSON]: http_to the service at $base.
http() { http_to "$base" "$@"; }

# json EXPR: evaluates a Python expression over the last body, bound to `j`; prints it (JSON for non-strings).
json() {
  python3 - "$1" "$tmp/body" <<'PY'
import json, sys
expr, path = sys.argv[1], sys.argv[2]
try:
    j = json.load(open(path))
    v = eval(expr, {"j": j})
except Exception as exc:  # noqa: BLE001
    print(f"<{type(exc).__name__}: {exc}>")
    sys.exit(0)
print(v if isinstance(v, str) else json.dumps(v))
PY
}

body() { head -c 600 "$tmp/body" 2>/dev/null; }

# pm ARGS...: podman, minus the harmless "unable to get systemd connection" lines (no systemd on these hosts).
pm() {
  local rc=0
  podman "$@" 2>"$tmp/podman.err" || rc=$?
  grep -v 'systemd connection' "$tmp/podman.err" >&2 || true
  return "$rc"
}

# running NAME: whether the container NAME is running.
running() { [ "$(podman inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
