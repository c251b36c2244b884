#!/usr/bin/env bash
# Two containers of the image as service replicas and one as a worker (`geekblog worker`, as in
# deploy/compose.yaml) on one PostgreSQL database (the machine's), checked over HTTP:
#  0. each replica answers /ready under its own GEEKBLOG_REPLICA; deploy/compose.yaml's health check works
#     in the image; the worker starts, and stops with exit code 0 on SIGTERM;
#  1. a job submitted to replica 1 is executed, and seen SUCCESS with its result through replica 2;
#  2. a chain submitted through replica 2 finishes, its result read through replica 1;
#  3. a replica SIGKILLed while a job runs: the other still answers and shows the job running; once its
#     lease expired, the restarted replica recovers the job and runs it again (attempt 2), visible through
#     the other one. (At-least-once: a task that dies with its replica runs again.)
#
# Run by scripts/container-test.sh after the single-container checks; alone, it needs the image built:
#
#   IMAGE=geekblog-tasks:test bash scripts/container-test-replicas.sh
#
# The containers use the host's network (each on a free port of 127.0.0.1) and a database created for
# the run on the PostgreSQL at PGHOST:PGPORT (default 127.0.0.1:5432) as PGUSER (default postgres, trust
# authentication); the database is dropped at the end, also on failure.
# Environment: IMAGE (default geekblog-tasks:test), WAIT_SECONDS (default 60) for each wait,
# LEASE_SECONDS (default 5): the replicas' GEEKBLOG_LEASE_SECONDS, short so that part 3 is quick.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared="$repo/../shared/container"
IMAGE=${IMAGE:-geekblog-tasks:test}
WAIT_SECONDS=${WAIT_SECONDS:-60}
LEASE_SECONDS=${LEASE_SECONDS:-5}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER

suffix="$$_$RANDOM"
db="gb_ct_$suffix"
replicas=("geekblog-ct-r1-${suffix//_/-}" "geekblog-ct-r2-${suffix//_/-}")
worker="geekblog-ct-worker-${suffix//_/-}"
bases=()
tmp=$(mktemp -d)
failed=0
db_created=0
started=$SECONDS
# shellcheck source=scripts/container-lib.sh
source "$repo/scripts/container-lib.sh"

sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "${2:-postgres}" -c "$1"; }

cleanup() {
  local code=$?
  set +e
  if [ "$code" -ne 0 ] || [ "$failed" -ne 0 ]; then
    for name in "${replicas[@]}" "$worker"; do
      if podman container exists "$name" 2>/dev/null; then
        echo "---- last logs of $name ----" >&2
        podman logs --tail 40 "$name" >&2 2>&1
      fi
    done
    echo "---- end of logs ----" >&2
  fi
  for name in "${replicas[@]}" "$worker"; do
    podman rm -f -v -t 0 "$name" >/dev/null 2>&1  # -v: and the anonymous volume of the image's /data
  done
  if [ "$db_created" = 1 ]; then
    sql "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || echo "could not drop database $db" >&2
  fi
  rm -rf "$tmp"
  if [ "$code" -eq 0 ]; then
    echo "container-test-replicas: all checks passed in $((SECONDS - started))s"
  else
    echo "container-test-replicas: FAILED (exit $code)" >&2
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -f "$shared/podman-env.sh" ] || fail "$shared/podman-env.sh not found (../shared/container must sit beside the repo)"
# shellcheck source=/dev/null
source "$shared/podman-env.sh"
command -v psql >/dev/null || fail "psql not found (the PostgreSQL client is needed to create the test database)"
podman image exists "$IMAGE" || fail "image $IMAGE not found: build it first (make container-test does)"

# ---------------------------------------------------------------- database
pg_isready -q -t 10 || fail "no PostgreSQL answers at $PGHOST:$PGPORT"
sql "CREATE DATABASE $db" >/dev/null || fail "CREATE DATABASE $db as $PGUSER on $PGHOST:$PGPORT"
db_created=1
url="postgresql://$PGUSER@$PGHOST:$PGPORT/$db"
pass "database $db created on $PGHOST:$PGPORT"

# ---------------------------------------------------------------- helpers
# start_replica N: runs replica N (0 or 1) on the host's network, on a free port of 127.0.0.1.
start_replica() {
  local n=$1 port
  port=$(free_port)
  bases[n]="http://127.0.0.1:$port"
  pm run -d --name "${replicas[n]}" --init --network host \
    -e GEEKBLOG_HOST=127.0.0.1 -e GEEKBLOG_PORT="$port" \
    -e GEEKBLOG_DATABASE_URL="$url" -e GEEKBLOG_REPLICA="replica-$((n + 1))" \
    -e GEEKBLOG_LEASE_SECONDS="$LEASE_SECONDS" \
    "$IMAGE" >/dev/null || fail "podman run of replica $((n + 1))"
  log "replica $((n + 1)) (${replicas[n]}) started on ${bases[n]}"
}

# wait_ready N: polls replica N's /ready until 200 (its database answers, its dispatcher runs).
wait_ready() {
  local n=$1 deadline=$((SECONDS + WAIT_SECONDS)) code name=${replicas[$1]}
  while :; do
    code=$(http_to "${bases[n]}" GET /ready)
    [ "$code" = 200 ] && return 0
    running "$name" || fail "replica $((n + 1)) stopped before /ready answered (exit code $(podman inspect --format '{{.State.ExitCode}}' "$name" 2>/dev/null))"
    [ $SECONDS -lt $deadline ] || fail "replica $((n + 1)): /ready did not answer 200 within ${WAIT_SECONDS}s (last status $code: $(body))"
    sleep 0.3
  done
}

# wait_until N PATH EXPR WHAT: polls GET PATH on replica N until EXPR (over the body, see `json`) is true.
wait_until() {
  local n=$1 path=$2 expr=$3 what=$4 deadline=$((SECONDS + WAIT_SECONDS)) code
  while :; do
    code=$(http_to "${bases[n]}" GET "$path")
    [ "$code" = 200 ] || fail "replica $((n + 1)): GET $path answered $code: $(body)"
    [ "$(json "$expr")" = true ] && return 0
    [ $SECONDS -lt $deadline ] || fail "replica $((n + 1)): $what not seen within ${WAIT_SECONDS}s: $(body)"
    sleep 0.2
  done
}

# submitted CODE WHAT: checks a submission answered 202 with an id; prints the id.
submitted() {
  local code=$1 what=$2 id
  [ "$code" = 202 ] || fail "$what answered $code (want 202): $(body)"
  id=$(json 'j["id"]')
  [ -n "$id" ] && [ "${id#<}" = "$id" ] || fail "$what: no id in the body: $(body)"
  echo "$id"
}

# ---------------------------------------------------------------- two replicas
t0=$SECONDS
start_replica 0
start_replica 1
wait_ready 0
wait_ready 1
pass "both replicas answered /ready 200 within $((SECONDS - t0))s"
for n in 0 1; do
  http_to "${bases[n]}" GET /ready >/dev/null
  [ "$(json 'j["replica"] == "replica-'$((n + 1))'" and j["storage"] == "postgres"')" = true ] \
    || fail "replica $((n + 1)): /ready does not name replica-$((n + 1)) on postgres: $(body)"
done
pass "each replica's /ready names it (GEEKBLOG_REPLICA) and its storage, postgres"

pm run -d --name "$worker" --init --network host -e GEEKBLOG_DATABASE_URL="$url" -e GEEKBLOG_REPLICA=worker-1 \
  -e GEEKBLOG_LEASE_SECONDS="$LEASE_SECONDS" "$IMAGE" geekblog worker --concurrency 4 >/dev/null \
  || fail "podman run of the worker"
deadline=$((SECONDS + WAIT_SECONDS))
until podman logs "$worker" 2>/dev/null | grep -q 'GeekBlog Tasks worker: replica worker-1, PostgreSQL'; do
  running "$worker" || fail "the worker stopped at start (exit code $(podman inspect --format '{{.State.ExitCode}}' "$worker"))"
  [ $SECONDS -lt $deadline ] || fail "the worker printed no start-up line within ${WAIT_SECONDS}s"
  sleep 0.3
done
pass "worker started (geekblog worker --concurrency 4): $(podman logs "$worker" 2>/dev/null | grep -m1 'GeekBlog Tasks worker')"

# deploy/compose.yaml's health check of a service replica, run inside the image as Compose would run it
# (the image's Python reads the file: it has PyYAML); it must pass on a ready replica and fail on a port
# where nothing answers.
compose_check() {
  pm exec -i "$@" python -c '
import subprocess, sys, yaml
test = yaml.safe_load(sys.stdin)["services"]["service-1"]["healthcheck"]["test"]
argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
sys.exit(subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20).returncode)
' <"$repo/deploy/compose.yaml"
}
compose_check "${replicas[1]}" || fail "deploy/compose.yaml's health check failed on ready replica 2"
if compose_check -e GEEKBLOG_PORT=1 "${replicas[1]}"; then
  fail "deploy/compose.yaml's health check passed where nothing answers (port 1)"
fi
pass "deploy/compose.yaml's health check passes in the image on a ready replica, fails where nothing answers"

# 1. A job submitted to replica 1, read through replica 2.
job=$(submitted "$(http_to "${bases[0]}" POST /jobs '{"task": "geekblog.add", "args": [20, 22]}')" "replica 1: POST /jobs")
wait_until 1 "/jobs/$job" 'j["state"] in ("SUCCESS", "FAILURE", "REVOKED")' "a finished job $job"
[ "$(json 'j["state"] == "SUCCESS" and j["result"] == 42 and j["attempts"] == 1')" = true ] \
  || fail "replica 2: job $job is not SUCCESS with result 42 after one attempt: $(body)"
pass "job $job submitted to replica 1 ran once; replica 2 reads it SUCCESS with result 42"

# 2. A chain submitted through replica 2, read through replica 1: ((1 + 2) + 10) + 100 = 113.
chain='{"canvas": {"chain": [{"task": "geekblog.add", "args": [1, 2]}, {"task": "geekblog.add", "args": [10]}, {"task": "geekblog.add", "args": [100]}]}}'
workflow=$(submitted "$(http_to "${bases[1]}" POST /workflows "$chain")" "replica 2: POST /workflows")
wait_until 0 "/workflows/$workflow" 'j["state"] in ("SUCCESS", "FAILURE", "REVOKED")' "a finished workflow $workflow"
[ "$(json 'j["state"] == "SUCCESS" and j["result"] == 113 and [n["state"] for n in j["nodes"]] == ["SUCCESS"] * 3')" = true ] \
  || fail "replica 1: chain $workflow is not SUCCESS with result 113 and three SUCCESS steps: $(body)"
pass "chain $workflow submitted to replica 2 ran its 3 steps; replica 1 reads it SUCCESS with result 113"

# 3. Replica 1 dies while it runs a job; replica 2 goes on answering; the job is recovered once its lease expired.
t0=$SECONDS
sleeper=$(submitted "$(http_to "${bases[0]}" POST /jobs '{"task": "geekblog.sleep", "args": [4, 8]}')" "replica 1: POST /jobs (sleep)")
wait_until 1 "/jobs/$sleeper" '(j["progress"] or {}).get("meta", {}).get("done", 0) >= 1' "progress of the running job $sleeper"
pm kill -s KILL "${replicas[0]}" >/dev/null || fail "podman kill of replica 1"
code=$(http_to "${bases[1]}" GET "/jobs/$sleeper")
[ "$code" = 200 ] || fail "replica 2: GET /jobs/$sleeper answered $code with replica 1 dead: $(body)"
[ "$(json 'j["state"] in ("STARTED", "PROGRESS") and j["attempts"] == 1')" = true ] \
  || fail "replica 2: job $sleeper is not still running (attempt 1) after replica 1 died: $(body)"
pass "replica 1 SIGKILLed mid-job: replica 2 still answers, job $sleeper still shows $(json 'j["state"]') (attempt 1)"
# The dead replica's lease is recovered only once it expired (an engine on PostgreSQL cannot know that its owner
# is dead): poll the database for that, then restart the replica, whose start recovers expired leases.
deadline=$((SECONDS + LEASE_SECONDS + WAIT_SECONDS))
until [ "$(sql "SELECT lease_expires_at < extract(epoch FROM clock_timestamp()) FROM jobs WHERE id = '$sleeper'" "$db")" = t ]; do
  [ $SECONDS -lt $deadline ] || fail "the lease of job $sleeper did not expire within $((LEASE_SECONDS + WAIT_SECONDS))s"
  sleep 0.3
done
pm start "${replicas[0]}" >/dev/null || fail "podman start of replica 1"
wait_ready 0
wait_until 1 "/jobs/$sleeper" 'j["state"] in ("SUCCESS", "FAILURE", "REVOKED")' "job $sleeper finished after the recovery"
[ "$(json 'j["state"] == "SUCCESS" and j["result"] == 4 and j["attempts"] == 2')" = true ] \
  || fail "replica 2: recovered job $sleeper is not SUCCESS with result 4 after 2 attempts: $(body)"
pass "job $sleeper recovered after its lease expired and ran again: SUCCESS on attempt 2, seen through replica 2 ($((SECONDS - t0))s)"
code=$(http_to "${bases[1]}" GET "/jobs/$job")
[ "$(json 'j["state"] == "SUCCESS" and j["attempts"] == 1')" = true ] \
  || fail "replica 2: job $job, finished before the crash, changed: $code $(body)"
pass "job $job, finished before the crash, is unchanged (SUCCESS, 1 attempt)"

pm stop -t 15 "$worker" >/dev/null || fail "podman stop of the worker"
code=$(podman inspect --format '{{.State.ExitCode}}' "$worker")
[ "$code" = 0 ] || fail "the worker exited $code on SIGTERM (want 0)"
pass "the worker stopped on SIGTERM with exit code 0"

pass "replicas on PostgreSQL: all checks ($((SECONDS - started))s)"
