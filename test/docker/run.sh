#!/usr/bin/env bash
# npm run test:docker: the images built and run for real, as docs/deployment.md tells users to.
#
#   1. a Docker engine: Debian's docker.io (and docker-compose) installed when missing, dockerd
#      started when none runs (and stopped at the end: only the one started here);
#   2. base images: the official node:20-bookworm(-slim) and nginx images when present or pullable,
#      otherwise local stand-ins made from Debian's packages and the npm registry (base-images.sh;
#      made once, then found by tag);
#   3. test/docker/deploy.e2e.ts: the README's docker commands run as they are (published on
#      127.0.0.1 only): docker build, docker run + HEALTHCHECK + requests + docker stop draining,
#      docker-compose with two replicas behind the gateway and a replica killed under load, and the
#      CUDA image's build where its base images can be had.
#
# Fails, never skips, when Docker cannot work. Cleans up its containers, networks, the images its
# rebuilds left untagged, and the dockerd it started. Needs root (it installs packages and starts dockerd), as CI has.
#
# Environment (all optional):
#   PASTA_TEST_DOCKERD_NICE=15   niceness of a dockerd started here (and of the builds it runs)
#   PASTA_TEST_DOCKER_CUDA=auto  auto: build docker/Dockerfile.cuda when its base images can be had;
#                                skip: never; require: fail when they cannot
#   PULL_TIMEOUT_S, DEBIAN_MIRROR, STANDIN_NODE_VERSION, STANDIN_NPM_VERSION: base-images.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
export DOCKER_BUILDKIT=1 # Docker 20.10 (Debian's): BuildKit, for the build secret; the default from 23 on
RUN_ID="$$"
LOG_DIR="$(mktemp -d /tmp/pasta-test-docker.XXXXXX)"
START_S=$(date +%s)
DOCKERD_PID=""
MODELS="$(cd "$ROOT/.." && pwd)/shared/models"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
# the official base images: docker/Dockerfile's and docker/compose.yaml's defaults (deploy.e2e.ts checks)
OFFICIAL_BUILDER=node:20-bookworm
OFFICIAL_RUNTIME=node:20-bookworm-slim
OFFICIAL_GATEWAY=nginx:1.27-bookworm
OFFICIAL_CUDA_BUILDER=nvidia/cuda:12.6.3-devel-ubuntu24.04
OFFICIAL_CUDA_RUNTIME=nvidia/cuda:12.6.3-runtime-ubuntu24.04

log() { printf '[test:docker] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
elapsed() { echo $(($(date +%s) - START_S)); }
APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then apt-get update -qq >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

cleanup() {
  local rc=$?
  set +e
  if docker info >/dev/null 2>&1; then
    local left
    # the test's own containers: `docker run --name pasta-server-test-<id>`, compose project pasta-test-<id>
    left=$( (docker ps -aq --filter "name=^pasta-server-test-$RUN_ID"; docker ps -aq --filter "label=com.docker.compose.project=pasta-test-$RUN_ID") | sort -u | tr '\n' ' ')
    if [ -n "${left// /}" ]; then log "removing containers left behind: $left"; docker rm -f $left >/dev/null 2>&1; fi
    local nets
    nets=$(docker network ls -q --filter "label=com.docker.compose.project=pasta-test-$RUN_ID")
    [ -n "$nets" ] && docker network rm $nets >/dev/null 2>&1
  fi
  if [ -n "$DOCKERD_PID" ]; then
    log "stopping the dockerd started here (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && { log "dockerd did not stop in 60 s: killing it"; kill -KILL "$DOCKERD_PID"; }
  fi
  [ -f "$LOG_DIR/report.txt" ] && { log "summary:"; sed 's/^/[test:docker]   /' "$LOG_DIR/report.txt" >&2; }
  log "$([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)") in $(elapsed) s; logs in $LOG_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x node_modules/.bin/tap ] || fail "node_modules is missing: run npm ci first (the checks use tap, tsx and the openai client)"
[ -f "$MODELS/$MODEL_FILE" ] || fail "the test model $MODELS/$MODEL_FILE is missing (../shared/models beside the checkout)"
[ "$(id -u)" = 0 ] || docker info >/dev/null 2>&1 || fail "run as root (it installs docker.io and starts dockerd), or with a running Docker engine you may use"

# --- 1. the Docker engine ---------------------------------------------------------------------
# a client that builds with BuildKit: one with the buildx plugin, or one older than 23, which has
# BuildKit built in (Debian's docker.io is 20.10); a 23+ client without buildx has only the legacy
# builder, which cannot take build secrets
buildkit_client() {
  local c v
  for c in $(type -ap docker) /usr/bin/docker; do
    [ -x "$c" ] || continue
    if "$c" buildx version >/dev/null 2>&1; then echo "$c"; return 0; fi
    v=$("$c" --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
    if [ -n "$v" ] && [ "$v" -lt 23 ]; then echo "$c"; return 0; fi
  done
  return 1
}
if ! command -v dockerd >/dev/null || ! buildkit_client >/dev/null; then
  log "installing Debian's docker.io"
  apt_install docker.io || fail "cannot install docker.io (apt-get install docker.io)"
fi
CLIENT=$(buildkit_client) || fail "no docker client that builds with BuildKit (install docker.io, or the buildx plugin)"
mkdir -p "$LOG_DIR/bin"
ln -s "$CLIENT" "$LOG_DIR/bin/docker"
export PATH="$LOG_DIR/bin:$PATH"
if ! command -v docker-compose >/dev/null; then
  log "installing Debian's docker-compose"
  apt_install docker-compose || fail "cannot install docker-compose (apt-get install docker-compose)"
fi

if docker info >/dev/null 2>&1; then
  log "using the Docker engine that is running ($(docker version -f '{{.Server.Version}}'))"
else
  log "starting dockerd (nice ${PASTA_TEST_DOCKERD_NICE:-0}; log: $LOG_DIR/dockerd.log)"
  # a pid file left by a dockerd that was killed: dockerd refuses to start if its pid is now another process's
  if [ -f /var/run/docker.pid ] && [ "$(ps -p "$(cat /var/run/docker.pid)" -o comm= 2>/dev/null)" != dockerd ]; then rm -f /var/run/docker.pid; fi
  nice -n "${PASTA_TEST_DOCKERD_NICE:-0}" dockerd >"$LOG_DIR/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { DOCKERD_PID=""; tail -n 20 "$LOG_DIR/dockerd.log" >&2; fail "dockerd exited at start (log above)"; }
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 20 "$LOG_DIR/dockerd.log" >&2; fail "dockerd did not answer within 60 s (log above)"; }
fi
log "Docker ready in $(elapsed) s: client $CLIENT ($(docker version -f '{{.Client.Version}}')), engine $(docker version -f '{{.Server.Version}}') ($(docker info -f '{{.Driver}}, cgroup {{.CgroupDriver}}')), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"

# --- 2. base images ---------------------------------------------------------------------------
# shellcheck source=test/docker/base-images.sh
source "$ROOT/test/docker/base-images.sh"
T=$(date +%s)
BUILDER_IMAGE=$(base_image "$OFFICIAL_BUILDER" node) || fail "cannot make a stand-in for $OFFICIAL_BUILDER"
RUNTIME_IMAGE=$(base_image "$OFFICIAL_RUNTIME" node-slim) || fail "cannot make a stand-in for $OFFICIAL_RUNTIME"
GATEWAY_IMAGE=$(base_image "$OFFICIAL_GATEWAY" nginx) || fail "cannot make a stand-in for $OFFICIAL_GATEWAY"
log "base images in $(($(date +%s) - T)) s: builder $BUILDER_IMAGE, runtime $RUNTIME_IMAGE, gateway $GATEWAY_IMAGE"
CUDA_SKIP=""
case "${PASTA_TEST_DOCKER_CUDA:-auto}" in
  skip) CUDA_SKIP="PASTA_TEST_DOCKER_CUDA=skip" ;;
  *)
    if have_or_pull "$OFFICIAL_CUDA_BUILDER" && have_or_pull "$OFFICIAL_CUDA_RUNTIME"; then :; else
      CUDA_SKIP="the CUDA base images ($OFFICIAL_CUDA_BUILDER, $OFFICIAL_CUDA_RUNTIME) cannot be pulled, and no stand-in can be made here: NVIDIA's CUDA 12 toolkit comes from NVIDIA's registry or apt repositories (on Ubuntu), neither reachable from this machine"
      [ "${PASTA_TEST_DOCKER_CUDA:-auto}" = require ] && fail "PASTA_TEST_DOCKER_CUDA=require: $CUDA_SKIP"
    fi ;;
esac

# --- 3. the deployment, for real --------------------------------------------------------------
export PASTA_TEST_DOCKER_RUN_ID="$RUN_ID" PASTA_TEST_DOCKER_REPORT="$LOG_DIR/report.txt" PASTA_TEST_DOCKER_LOG_DIR="$LOG_DIR"
export PASTA_TEST_DOCKER_MODELS="$MODELS" PASTA_TEST_DOCKER_MODEL_FILE="$MODEL_FILE"
export PASTA_TEST_DOCKER_OFFICIAL="$OFFICIAL_BUILDER $OFFICIAL_RUNTIME $OFFICIAL_GATEWAY $OFFICIAL_CUDA_BUILDER $OFFICIAL_CUDA_RUNTIME"
export PASTA_TEST_DOCKER_BUILDER_IMAGE="$BUILDER_IMAGE" PASTA_TEST_DOCKER_RUNTIME_IMAGE="$RUNTIME_IMAGE" PASTA_TEST_DOCKER_GATEWAY_IMAGE="$GATEWAY_IMAGE"
export PASTA_TEST_DOCKER_CUDA_SKIP="$CUDA_SKIP"
# behind a TLS-intercepting proxy (as here), npm in the build needs the machine's CA bundle: the build secret
[ -f /etc/ssl/certs/ca-certificates.crt ] && export PASTA_TEST_DOCKER_EXTRA_CA=/etc/ssl/certs/ca-certificates.crt
echo "base images: builder $BUILDER_IMAGE, runtime $RUNTIME_IMAGE, gateway $GATEWAY_IMAGE" >"$LOG_DIR/report.txt"
# one file, its steps in order (the build first); the build alone may take 15 minutes on 2 cores
npx tap --jobs=1 --timeout=3000 --disable-coverage test/docker/deploy.e2e.ts
