#!/usr/bin/env bash
# Builds the image from Containerfile and checks it end to end with podman:
# health, non-root user, HEALTHCHECK, a job over HTTP, and that finished and queued jobs
# survive a restart and a new container on the same /data volume; then (container-test-replicas.sh)
# two containers of the image on one PostgreSQL database serve each other's jobs and workflows, recover
# a SIGKILLed one's job, and a third runs `geekblog worker`.
#
# Needs ../shared/container/ beside the repository (see its README.md): it makes podman usable
# on these hosts and builds the base image localhost/python-base.
#
#   bash scripts/container-test.sh          (or: make container-test)
#
# Environment: IMAGE (default geekblog-tasks:test), BASE_IMAGE (default localhost/python-base),
# SKIP_BUILD=1 to test an image already built, WAIT_SECONDS (default 60) for each wait,
# REPLICAS=0 to skip the PostgreSQL replicas part (which also reads PGHOST, PGPORT, PGUSER: see that script).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared="$repo/../shared/container"
IMAGE=${IMAGE:-geekblog-tasks:test}
BASE_IMAGE=${BASE_IMAGE:-localhost/python-base}
WAIT_SECONDS=${WAIT_SECONDS:-60}

suffix="$$-$RANDOM"
ctr="geekblog-ct-$suffix"
vol="geekblog-ct-data-$suffix"
tmp=$(mktemp -d)
failed=0
# shellcheck source=scripts/container-lib.sh
source "$repo/scripts/container-lib.sh"

cleanup() {
  local code=$?
  set +e
  if [ "$code" -ne 0 ] || [ "$failed" -ne 0 ]; then
    if podman container exists "$ctr" 2>/dev/null; then
      echo "---- last container logs ($ctr) ----" >&2
      podman logs --tail 80 "$ctr" >&2 2>&1
      echo "---- end of logs ----" >&2
    fi
  fi
  podman rm -f -t 0 "$ctr" >/dev/null 2>&1
  podman volume rm -f "$vol" >/dev/null 2>&1
  rm -rf "$tmp"
  if [ "$code" -eq 0 ]; then
    echo "container-test: all checks passed"
  else
    echo "container-test: FAILED (exit $code)" >&2
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -f "$shared/podman-env.sh" ] || fail "$shared/podman-env.sh not found (../shared/container must sit beside the repo)"
# shellcheck source=/dev/null
source "$shared/podman-env.sh"
cd "$repo"

# ---------------------------------------------------------------- build
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  bash "$shared/base-image.sh"
  log "building $IMAGE from Containerfile (BASE_IMAGE=$BASE_IMAGE)"
  start=$(date +%s)
  # shellcheck disable=SC2086 # PODMAN_BUILD_FLAGS is a list of flags
  podman build $PODMAN_BUILD_FLAGS --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" -f Containerfile . \
    || fail "podman build"
  pass "image $IMAGE built in $(($(date +%s) - start))s ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
fi

# ---------------------------------------------------------------- helpers
wait_health() {
  local deadline=$((SECONDS + WAIT_SECONDS)) code
  while :; do
    code=$(http GET /health)
    [ "$code" = 200 ] && return 0
    running "$ctr" || fail "container stopped before /health answered (exit code $(podman inspect --format '{{.State.ExitCode}}' "$ctr" 2>/dev/null))"
    [ $SECONDS -lt $deadline ] || fail "/health did not answer 200 within ${WAIT_SECONDS}s (last status $code: $(body))"
    sleep 0.5
  done
}

# wait_job ID: polls GET /jobs/ID until a terminal state; leaves the job in $tmp/body.
wait_job() {
  local id=$1 deadline=$((SECONDS + WAIT_SECONDS)) code state
  while :; do
    code=$(http GET "/jobs/$id")
    [ "$code" = 200 ] || fail "GET /jobs/$id answered $code: $(body)"
    state=$(json 'j["state"]')
    case $state in SUCCESS | FAILURE | REVOKED) return 0 ;; esac
    [ $SECONDS -lt $deadline ] || fail "job $id still $state after ${WAIT_SECONDS}s"
    sleep 0.3
  done
}

start_container() {
  port=$(free_port)
  base="http://127.0.0.1:$port"
  pm run -d --name "$ctr" --init -p "127.0.0.1:$port:8000" -v "$vol:/data" "$IMAGE" >/dev/null \
    || fail "podman run"
  log "container $ctr started on $base (volume $vol)"
}

# check_jobs WHEN: the finished job is SUCCESS with result 5, the delayed one still PENDING.
check_jobs() {
  local when=$1 code
  code=$(http GET "/jobs/$job1")
  [ "$code" = 200 ] || fail "$when: GET /jobs/$job1 answered $code: $(body)"
  [ "$(json 'j["state"] == "SUCCESS" and j["result"] == 5')" = true ] \
    || fail "$when: job $job1 is not SUCCESS with result 5: $(body)"
  pass "$when: job $job1 is still SUCCESS with result 5"
  code=$(http GET "/jobs/$job2")
  [ "$code" = 200 ] || fail "$when: GET /jobs/$job2 answered $code: $(body)"
  [ "$(json 'j["state"]')" = PENDING ] || fail "$when: delayed job $job2 is not PENDING: $(body)"
  pass "$when: delayed job $job2 (countdown 3600) is still PENDING"
}

# ---------------------------------------------------------------- run
podman volume create "$vol" >/dev/null
start_container
t0=$SECONDS
wait_health
pass "GET /health answered 200 after $((SECONDS - t0))s"

uid=$(podman exec "$ctr" id -u | tr -d '\r')
[ -n "$uid" ] && [ "$uid" != 0 ] || fail "the service runs as uid '$uid' (root)"
pass "the service runs as non-root uid $uid"
pid1_user=$(podman top "$ctr" user args 2>/dev/null | awk 'NR > 1 && /geekblog/ {print $1; exit}' || true)
[ -z "$pid1_user" ] || log "process table: geekblog serve runs as user '$pid1_user'"

# `podman healthcheck run` may print a harmless systemd error on hosts without systemd; only its exit code counts.
if hc=$(podman healthcheck run "$ctr" 2>"$tmp/hc.err"); then
  pass "podman healthcheck run exited 0${hc:+ ($hc)}; health status: $(podman inspect --format '{{.State.Health.Status}}' "$ctr" 2>/dev/null || echo '?')"
else
  cat "$tmp/hc.err" >&2
  fail "podman healthcheck run exited non-zero${hc:+: $hc}"
fi

code=$(http POST /jobs '{"task": "geekblog.add", "args": [2, 3]}')
[ "$code" = 202 ] || fail "POST /jobs answered $code (want 202): $(body)"
job1=$(json 'j["id"]')
[ -n "$job1" ] && [ "${job1#<}" = "$job1" ] || fail "POST /jobs: no id in the body: $(body)"
pass "POST /jobs geekblog.add(2, 3) answered 202 with id $job1"

wait_job "$job1"
[ "$(json 'j["state"] == "SUCCESS" and j["result"] == 5')" = true ] || fail "job $job1 did not succeed with 5: $(body)"
pass "job $job1 reached SUCCESS with result 5"

code=$(http POST /jobs '{"task": "geekblog.add", "args": [2, 3], "options": {"countdown": 3600}}')
[ "$code" = 202 ] || fail "POST /jobs with countdown answered $code (want 202): $(body)"
job2=$(json 'j["id"]')
[ -n "$job2" ] && [ "${job2#<}" = "$job2" ] || fail "POST /jobs with countdown: no id in the body: $(body)"
[ "$(json 'j["state"]')" = PENDING ] || fail "delayed job $job2 is not PENDING: $(body)"
pass "POST /jobs with countdown 3600 answered 202 with PENDING job $job2"

podman exec "$ctr" ls -l /data >"$tmp/ls" 2>&1 || true
grep -q 'geekblog.db' "$tmp/ls" || fail "no geekblog.db in /data: $(cat "$tmp/ls")"
pass "the database is on the volume: $(grep -E 'geekblog\.db$' "$tmp/ls" | awk '{print $3 ":" $4, $NF}')"

# Restart: SIGTERM (through --init) must stop the service well within the 10 s timeout.
t0=$SECONDS
pm stop -t 10 "$ctr" >/dev/null || fail "podman stop"
stop_secs=$((SECONDS - t0))
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$ctr")
if [ "$stop_secs" -ge 10 ]; then
  log "note: podman stop took ${stop_secs}s (SIGTERM did not stop the service; it was killed), exit code $exit_code"
else
  # 143 is expected: after its graceful shutdown uvicorn re-raises the SIGTERM it caught.
  pass "podman stop: the service stopped on SIGTERM in ${stop_secs}s (exit code $exit_code)"
fi
pm start "$ctr" >/dev/null || fail "podman start"
t0=$SECONDS
wait_health
pass "after restart: GET /health answered 200 after $((SECONDS - t0))s"
check_jobs "after restart"

# A new container on the same volume: the jobs live in /data, not in the container's own layer.
pm rm -f -t 10 "$ctr" >/dev/null || fail "podman rm"
start_container
t0=$SECONDS
wait_health
pass "new container on the same volume: GET /health answered 200 after $((SECONDS - t0))s"
check_jobs "new container"

pass "all single-container checks"

# ---------------------------------------------------------------- replicas on PostgreSQL
if [ "${REPLICAS:-1}" != 0 ]; then
  pm rm -f -t 10 "$ctr" >/dev/null || fail "podman rm"
  IMAGE="$IMAGE" WAIT_SECONDS="$WAIT_SECONDS" bash "$repo/scripts/container-test-replicas.sh" \
    || fail "the replicas on PostgreSQL (scripts/container-test-replicas.sh)"
fi
echo "PASS: all container checks"
