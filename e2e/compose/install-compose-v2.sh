#!/usr/bin/env bash
# Installs Docker Compose v2 (the `docker compose` CLI plugin) built from source from the Go
# module proxy -- no container registry, no GitHub release download -- so the e2e compose suite
# can run against v2 as well as Debian's docker-compose v1.
#
# The version is the one go.mod beside this script requires (github.com/docker/compose/v2). The
# binary is built once into ${TUNECLUSTER_COMPOSE_CACHE:-$HOME/.cache/tunecluster-compose}/<version>/
# (GOCACHE and GOMODCACHE live there too) and copied to the CLI plugin folder:
#   ${TUNECLUSTER_COMPOSE_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins (root) or ~/.docker/cli-plugins}
# Idempotent: a cached binary that matches go.mod/go.sum/this script/the Go version is reused, an
# installed plugin identical to it is left alone, and when `docker compose` already works with a
# plugin from elsewhere nothing is done (TUNECLUSTER_COMPOSE_FORCE=1 installs ours anyway).
# First build: about 10 minutes on 2 busy cores (~500 MB of modules, ~900 MB of build cache).
# Needs Go >= 1.24.9 (this machine kind ships Go 1.26 in /usr/local/go/bin).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
say() { echo "install-compose-v2: $*" >&2; }

VERSION="$(awk '$1=="require" && $2=="github.com/docker/compose/v2" {print $3} $1=="github.com/docker/compose/v2" {print $2}' go.mod | head -1)"
[[ -n "$VERSION" ]] || { say "no github.com/docker/compose/v2 requirement in $here/go.mod"; exit 2; }
CACHE="${TUNECLUSTER_COMPOSE_CACHE:-$HOME/.cache/tunecluster-compose}"
if [[ -n "${TUNECLUSTER_COMPOSE_PLUGIN_DIR:-}" ]]; then
  PLUGINS="$TUNECLUSTER_COMPOSE_PLUGIN_DIR"
elif [[ "$(id -u)" == 0 ]]; then
  PLUGINS=/usr/local/lib/docker/cli-plugins
else
  PLUGINS="$HOME/.docker/cli-plugins"
fi
TARGET="$PLUGINS/docker-compose"
BIN="$CACHE/$VERSION/docker-compose"

# Already there? (ours, or a compose v2 plugin installed some other way)
if [[ -x "$TARGET" && -x "$BIN" ]] && cmp -s "$TARGET" "$BIN"; then
  say "Docker Compose $VERSION already installed at $TARGET ($(docker compose version --short 2>/dev/null || echo 'docker CLI missing?'))"
  exit 0
fi
if [[ "${TUNECLUSTER_COMPOSE_FORCE:-0}" != 1 ]] && command -v docker >/dev/null 2>&1 \
   && have="$(docker compose version --short 2>/dev/null)" && [[ -n "$have" ]]; then
  say "docker compose $have is already available (not from this script); nothing to do (TUNECLUSTER_COMPOSE_FORCE=1 installs $VERSION anyway)"
  exit 0
fi

command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null 2>&1; then
  say "no 'go' on PATH: building Docker Compose $VERSION needs Go >= 1.24.9 (e.g. /usr/local/go/bin/go)"
  exit 2
fi

stamp="$( (cat go.mod go.sum install-compose-v2.sh; go version) | sha256sum | cut -c1-16)"
if [[ -x "$BIN" && "$(cat "$BIN.stamp" 2>/dev/null)" == "$stamp" ]]; then
  say "using the cached build $BIN"
else
  export GOCACHE="$CACHE/gocache" GOMODCACHE="$CACHE/gomod" GOTOOLCHAIN=local CGO_ENABLED=0
  # -mod=readonly: exactly the versions go.mod/go.sum pin (compose's own), nothing re-resolved.
  export GOFLAGS="-mod=readonly -buildvcs=false"
  mkdir -p "$CACHE/$VERSION" "$GOCACHE" "$GOMODCACHE"
  say "building Docker Compose $VERSION with $(go version | cut -d' ' -f3) into $BIN (first build: ~10 min on 2 cores)"
  start=$(date +%s)
  tmp="$(mktemp -d "$CACHE/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # Only the compose command; -s -w: no symbol table/DWARF; the version as `docker compose version` shows it.
  nice -n 19 go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$VERSION" \
    -o "$tmp/docker-compose" github.com/docker/compose/v2/cmd
  mv "$tmp/docker-compose" "$BIN"
  echo "$stamp" > "$BIN.stamp"
  say "built $BIN ($(du -h "$BIN" | cut -f1)) in $(( $(date +%s) - start )) s"
  if [[ "${TUNECLUSTER_DROP_GO_CACHE:-}" == 1 ]]; then  # CI: a machine used once
    go clean -modcache && rm -rf "$GOCACHE"
    say "removed the Go build and module caches (TUNECLUSTER_DROP_GO_CACHE=1)"
  fi
fi

mkdir -p "$PLUGINS"
install -m 0755 "$BIN" "$TARGET.tmp.$$"
mv -f "$TARGET.tmp.$$" "$TARGET"
say "installed $TARGET"
if command -v docker >/dev/null 2>&1; then
  got="$(docker compose version 2>&1)" || { say "docker compose version failed: $got"; exit 1; }
  say "$got"
else
  say "no docker CLI on PATH: the plugin is in place for when there is one"
fi
