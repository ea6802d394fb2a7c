#!/usr/bin/env bash
# `make docker-check`: build the Docker image and run it on a machine without a Docker engine.
#
# buildah (as root, --isolation chroot) builds ./Dockerfile on a local stand-in for python:3.11-slim
# (scripts/docker_base.sh, cached) with DEMO_FLAGS=--quick, passing this machine's pip configuration
# in as a bind-mounted /etc/pip.conf plus the local folders it names (nothing of it lands in the
# Dockerfile or the image). Then it starts the image's own CMD (chroot isolation shares the host
# network: the dashboard answers on localhost:$PORT), waits for /_stcore/health, checks that it gave
# the demo accounts new passwords (the image's are marked as made at image build and were never in
# the build log), opens every page in Chromium (signed in as the demo admin with the password the
# container printed) and checks that the Benchmark page shows the means stored in the image's
# workspace, stops it (SIGTERM, as docker stop) and checks nothing of it still runs, starts it again
# (the same volume: no new passwords), then starts the image with /data read-only and expects one
# error line.
# Whatever it started is removed on exit; the base image and the built image stay (cache for the
# next run).
#
#   scripts/docker_check.sh            build, run, check
#   scripts/docker_check.sh --remove   remove the check image, the base image and untagged build layers
#
# Environment: XAUDIT_CHECK_PORT (18501), DEMO_FLAGS (--quick; empty for the full demo),
# XAUDIT_BASE_IMAGE (localhost/xaudit-base:bookworm), XAUDIT_CHECK_IMAGE (localhost/xaudit:check),
# TORCH_INDEX (default: PyTorch's CPU index when reachable, else PyPI's torch, a CUDA build),
# PYTHON (.venv/bin/python: Playwright for the browser check).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${XAUDIT_CHECK_PORT:-18501}"
DEMO_FLAGS="${DEMO_FLAGS---quick}"
BASE="${XAUDIT_BASE_IMAGE:-localhost/xaudit-base:bookworm}"
IMAGE="${XAUDIT_CHECK_IMAGE:-localhost/xaudit:check}"
PYTHON="${PYTHON:-.venv/bin/python}"
BUILD_TIMEOUT_S="${XAUDIT_BUILD_TIMEOUT_S:-3600}"
HEALTH_TIMEOUT_S=180

say() { echo "docker-check: $*"; }
fail() { echo "docker-check: FAILED: $*" >&2; exit 1; }

if [[ "${1:-}" == "--remove" ]]; then
    buildah rmi "$IMAGE" >/dev/null 2>&1 && say "removed $IMAGE" || say "no image $IMAGE"
    scripts/docker_base.sh --remove "$BASE"
    buildah rmi --prune >/dev/null 2>&1 || true  # the build's layer cache: untagged images nothing builds on
    exit 0
fi

[[ $(id -u) == 0 ]] || fail "buildah's chroot isolation needs root; run as root"
command -v buildah >/dev/null || fail "buildah is missing: apt-get install -y buildah debootstrap"
[[ -x "$PYTHON" ]] || fail "$PYTHON missing (the venv with Playwright): run make setup, or set PYTHON"
"$PYTHON" -c "import playwright" 2>/dev/null || fail "$PYTHON has no playwright: pip install -r requirements.txt"
[[ -x /usr/bin/chromium ]] || bash scripts/ensure_chromium.sh
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    fail "port $PORT is in use; set XAUDIT_CHECK_PORT to a free port"
fi

tmp=$(mktemp -d)
ctr=""
run_pid=""
build_pid=""
stop_run() {  # SIGTERM to the process group of `buildah run` (the container's CMD), SIGKILL after 20 s
    [[ -n "$run_pid" ]] || return 0
    kill -TERM -- "-$run_pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
    run_pid=""
}
cleanup() {
    if [[ -n "$build_pid" ]]; then kill -TERM "$build_pid" 2>/dev/null || true; wait "$build_pid" 2>/dev/null || true; fi
    stop_run
    if [[ -n "$ctr" ]]; then buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "docker-check: FAILED: line $LINENO exited with status $?" >&2' ERR
trap 'exit 130' INT TERM

t_all=$SECONDS
scripts/docker_base.sh "$BASE"

# This machine's pip configuration -> $tmp/pip.conf (bind-mounted at /etc/pip.conf during RUN) and
# the local paths it names (bind-mounted read-only at the same place; a PEP 503 .../simple index
# brings its parent, where its links point).
"$PYTHON" -m pip config list > "$tmp/pip-config.txt"
"$PYTHON" - "$tmp" <<'PY' > "$tmp/volumes.txt"
import ast, configparser, os, sys
tmp = sys.argv[1]
conf = configparser.ConfigParser(interpolation=None)
paths = []
for line in open(f"{tmp}/pip-config.txt"):
    key, _, value = line.strip().partition("=")
    if not value:
        continue
    scope, _, name = key.rpartition(".")
    section = "global" if scope in (":env:", "global", "") else scope.split(":")[-1]
    value = ast.literal_eval(value)
    conf.setdefault(section, {})[name] = value
    for token in value.split():
        path = token[len("file://"):] if token.startswith("file://") else token
        if path.startswith("/") and os.path.exists(path):
            path = os.path.dirname(path.rstrip("/")) if path.rstrip("/").endswith("/simple") else path
            paths.append(path)
with open(f"{tmp}/pip.conf", "w") as f:
    conf.write(f)
print("\n".join(dict.fromkeys(paths)))
PY
build_mounts=(--volume "$tmp/pip.conf:/etc/pip.conf:ro")
while IFS= read -r path; do
    [[ -n "$path" ]] && build_mounts+=(--volume "$path:$path:ro")
done < "$tmp/volumes.txt"

# torch: PyTorch's CPU index (the Dockerfile's default) when it answers, else PyPI's torch (its
# Linux wheels are the CUDA build; local copies named by the pip configuration are used first).
if [[ -z "${TORCH_INDEX:-}" ]]; then
    if curl -fsS -m 10 -o /dev/null https://download.pytorch.org/whl/cpu/torch/ 2>/dev/null; then
        TORCH_INDEX=https://download.pytorch.org/whl/cpu
    else
        TORCH_INDEX=https://pypi.org/simple
    fi
fi
say "building $IMAGE on $BASE (DEMO_FLAGS='$DEMO_FLAGS', torch from $TORCH_INDEX; pip: $(tr '\n' ' ' < "$tmp/volumes.txt"))"

t0=$SECONDS
# In the background and waited for, so that Ctrl-C or a TERM reaches the trap (and the build) at once.
timeout "$BUILD_TIMEOUT_S" buildah bud --isolation chroot --layers --force-rm --format docker -f Dockerfile -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE" --build-arg DEMO_FLAGS="$DEMO_FLAGS" --build-arg TORCH_INDEX="$TORCH_INDEX" \
    "${build_mounts[@]}" . > "$tmp/build.log" 2>&1 &
build_pid=$!
wait "$build_pid" || { build_pid=""; tail -n 40 "$tmp/build.log" >&2; fail "image build failed or passed ${BUILD_TIMEOUT_S} s (log tail above)"; }
build_pid=""
build_s=$((SECONDS - t0))
size=$(buildah images --format '{{.Size}}' "$IMAGE" | head -n1)
say "built $IMAGE in ${build_s} s, size $size"

# The image's own command, as docker run would start it (entrypoint + cmd), on $PORT.
buildah inspect --type image "$IMAGE" > "$tmp/image.json"
mapfile -t cmd < <("$PYTHON" -c 'import json, sys
config = json.load(open(sys.argv[1]))["OCIv1"]["config"]
print("\n".join([*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]))' "$tmp/image.json")
(( ${#cmd[@]} )) || fail "the image has no CMD or ENTRYPOINT"
ctr=$(buildah from --quiet --name "xaudit-check-$$" "$IMAGE")
root=$(buildah mount "$ctr")
csv="$root/data/workspace/reports/demo/benchmark.csv"
[[ -s "$csv" ]] || fail "the image holds no demo report ($csv): the build did not finish the workspace"
# The image's demo passwords: marked to be replaced at a container's first start, and not in the build log.
[[ -f "$root/data/workspace/review/demo-accounts.image-build" ]] \
    || fail "the image's workspace has no review/demo-accounts.image-build: its demo passwords would be every container's"
mapfile -t built_pw < <("$PYTHON" -c 'import json, sys
print("\n".join(a["password"] for a in json.load(open(sys.argv[1]))["accounts"]))' \
    "$root/data/workspace/review/demo-accounts.json")
(( ${#built_pw[@]} == 3 )) || fail "the image keeps ${#built_pw[@]} demo passwords, expected 3"
for pw in "${built_pw[@]}"; do
    ! grep -qF -- "$pw" "$tmp/build.log" || fail "a demo password of the image is in its build log"
done

user=$(buildah run --isolation chroot "$ctr" -- id -un)
[[ "$user" == xaudit ]] || fail "the image runs as '$user', expected the unprivileged user xaudit"
say "starting: ${cmd[*]} (as $user, XAUDIT_PORT=$PORT)"
t0=$SECONDS
setsid buildah run --isolation chroot --env "XAUDIT_PORT=$PORT" "$ctr" -- "${cmd[@]}" > "$tmp/run.log" 2>&1 &
run_pid=$!
until curl -fsS -m 2 "http://127.0.0.1:$PORT/_stcore/health" 2>/dev/null | grep -q ok; do
    kill -0 "$run_pid" 2>/dev/null || { tail -n 30 "$tmp/run.log" >&2; fail "the container exited before it was healthy"; }
    (( SECONDS - t0 < HEALTH_TIMEOUT_S )) || { tail -n 30 "$tmp/run.log" >&2; fail "not healthy after ${HEALTH_TIMEOUT_S} s"; }
    sleep 0.5
done
healthy_s=$((SECONDS - t0))
say "healthy after ${healthy_s} s: http://127.0.0.1:$PORT"
# The first start gave the demo accounts new passwords and printed them (before the dashboard
# started); the walk signs in with the admin's printed one, the only place it is outside the
# container's /data (buildah 1.28 keeps that volume apart from the mounted image, as Docker does).
grep -q "the demo passwords made at image build no longer work" "$tmp/run.log" \
    || { tail -n 30 "$tmp/run.log" >&2; fail "the first start did not replace the demo passwords made at image build"; }
admin_pw=$(awk '$1 == "demo-admin" && $2 == "admin" && NF == 3 {print $3}' "$tmp/run.log" | tail -n1)
[[ -n "$admin_pw" ]] || { tail -n 30 "$tmp/run.log" >&2; fail "the first start printed no demo-admin password"; }
for pw in "${built_pw[@]}"; do [[ "$admin_pw" != "$pw" ]] || fail "the printed demo-admin password is the image's"; done
mkdir -p "$tmp/signin/review"
"$PYTHON" -c 'import json, sys
json.dump({"accounts": [{"name": "demo-admin", "role": "admin", "password": sys.argv[2]}]}, open(sys.argv[1], "w"))' \
    "$tmp/signin/review/demo-accounts.json" "$admin_pw"
# The command resumes the workspace built into the image: nothing is left to build.
for _ in $(seq 240); do grep -q "demo workspace complete" "$tmp/run.log" && break; sleep 0.5; done
grep -q "demo workspace complete" "$tmp/run.log" \
    || { tail -c 2000 "$tmp/run.log" >&2; fail "the image's command is still building after 2 min: its workspace was not complete"; }

timeout 600 "$PYTHON" tests/e2e/walk.py "http://127.0.0.1:$PORT" --benchmark-csv "$csv" --home "$tmp/signin" \
    || { tail -n 30 "$tmp/run.log" >&2; fail "a page did not render in Chromium (see above)"; }

# docker stop: SIGTERM to the container's main process only (xaudit, PID 1 in Docker); the dashboard
# must go with it, and nothing started by `buildah run` (its own session) may be left.
session() { ps -eo pid=,sid= | awk -v s="$run_pid" '$2 == s {print $1}'; }
main=$(for p in $(session); do
    if tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q "bin/xaudit demo"; then echo "$p"; fi
done | head -n1)
[[ -n "$main" ]] || fail "no xaudit process found under buildah run"
kill -TERM "$main"
for _ in $(seq 60); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.5; done
kill -0 "$run_pid" 2>/dev/null && fail "the container did not stop within 30 s of SIGTERM to xaudit"
left=$(session | tr '\n' ' ')
[[ -z "$left" ]] || fail "processes of the container still run after SIGTERM: $left"
if curl -fsS -m 2 "http://127.0.0.1:$PORT/_stcore/health" >/dev/null 2>&1; then fail "the dashboard still answers after SIGTERM"; fi
wait "$run_pid" 2>/dev/null || true
run_pid=""
say "stopped by SIGTERM to xaudit: no process of the container left"

# A second start of the same container (its /data volume as the first start left it): the demo
# passwords are this volume's already, none is replaced or printed.
code=0
out=$(timeout 300 buildah run --isolation chroot "$ctr" -- sh -c 'exec xaudit demo --no-serve $XAUDIT_DEMO_FLAGS' 2>&1) || code=$?
[[ $code == 0 ]] || { tail -n 30 <<< "$out" >&2; fail "the second start (--no-serve) exited $code"; }
grep -q "demo accounts exist: " <<< "$out" && ! grep -qF -- "$admin_pw" <<< "$out" \
    && ! grep -q "made at image build no longer work" <<< "$out" \
    || { tail -n 30 <<< "$out" >&2; fail "the second start replaced or printed the demo passwords"; }
say "second start: the demo passwords of the first are kept, none printed"

# A read-only workspace (docker run -v xaudit-data:/data:ro): one error line, exit 2. buildah mounts
# the image's VOLUME /data itself, so the built workspace goes read-only one level below it.
code=0
out=$(timeout 120 buildah run --isolation chroot --env "XAUDIT_PORT=$PORT" \
    --volume "$root/data/workspace:/data/workspace:ro" "$ctr" -- "${cmd[@]}" 2>&1) || code=$?
out=$(grep -v -E '^(subprocess exited |Error: exit status )' <<< "$out" || true)  # buildah's own lines
[[ $code == 2 ]] || { echo "$out" >&2; fail "read-only /data: exit $code, expected 2"; }
[[ "$out" == "error: workspace folder /data/workspace is not writable (read-only file system); "* && "$out" != *$'\n'* ]] \
    || { echo "$out" >&2; fail "read-only /data: expected one error line"; }
say "read-only /data: $out"

say "OK in $((SECONDS - t_all)) s (build ${build_s} s, image $size, start to healthy ${healthy_s} s)"
