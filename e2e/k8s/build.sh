#!/usr/bin/env bash
# Builds the Kubernetes test bed's binaries for one pinned release from the Go module proxy:
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd pause
# and, from the small module in tools/ (tools/go.mod), the test bed's image registry (the CNCF
# distribution registry, `registry`), `htpasswd` (a bcrypt password line for the registry) and
# `sharedfs-provisioner` (the ReadWriteMany provisioner, on sig-storage-lib-external-provisioner), and
# from tools/local-path/go.mod rancher's `local-path-provisioner` (the ReadWriteOnce class), and
# from tools/kube-router/go.mod cloudnativelabs' `kube-router` (the bed runs only its network policy
# controller: NetworkPolicy enforced with iptables + ipset; test bed only, never shipped to users)
# into ${TUNECLUSTER_K8S_CACHE:-$HOME/.cache/tunecluster-k8s}/<version>/bin (outside the repo).
# GOCACHE and GOMODCACHE live in the same cache folder, so a second run takes seconds; a run
# whose binaries are already there and match go.mod/go.sum/this script returns at once.
# TUNECLUSTER_DROP_GO_CACHE=1 removes GOCACHE and GOMODCACHE (about 8 GB) once the binaries are
# built: CI, on a machine used once, sets it to leave that disk to the tests.
# Prints the bin folder on its last line. Needs Go >= 1.24 and gcc (for the static pause binary).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

K8S_VERSION="$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' go.mod)"
ETCD_VERSION="$(awk '$1=="go.etcd.io/etcd/server/v3" {print $2}' go.mod)"
KUBE_ROUTER_VERSION="$(awk '$1=="require" && $2=="github.com/cloudnativelabs/kube-router/v2" {print $3}' tools/kube-router/go.mod)"
CACHE="${TUNECLUSTER_K8S_CACHE:-$HOME/.cache/tunecluster-k8s}"
BIN="$CACHE/$K8S_VERSION/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd pause registry htpasswd sharedfs-provisioner local-path-provisioner kube-router)

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: no 'go' on PATH: the Kubernetes test bed needs Go >= 1.24 (this machine kind ships Go 1.26 in /usr/local/go/bin)" >&2
  exit 2
fi
if ! command -v gcc >/dev/null 2>&1; then
  echo "build.sh: no 'gcc' on PATH: needed to compile the static pause binary" >&2
  exit 2
fi

stamp="$( (cat go.mod go.sum build.sh tools/go.mod tools/go.sum tools/*.go tools/*/*.go tools/local-path/go.* tools/kube-router/go.*; go version) | sha256sum | cut -c1-16)"
have_all=1
for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || have_all=0; done
if [[ $have_all == 1 && "$(cat "$BIN/.stamp" 2>/dev/null)" == "$stamp" ]]; then
  echo "build.sh: Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kube-router $KUBE_ROUTER_VERSION already built (cached)" >&2
  echo "$BIN"
  exit 0
fi

export GOCACHE="$CACHE/gocache" GOMODCACHE="$CACHE/gomod" GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
mkdir -p "$BIN" "$GOCACHE" "$GOMODCACHE"
start=$(date +%s)
echo "build.sh: building Kubernetes $K8S_VERSION and etcd $ETCD_VERSION with $(go version | cut -d' ' -f3) into $BIN" >&2
echo "build.sh: (first build on 2 cores takes tens of minutes; later builds come from the cache)" >&2

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
vflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  vflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  vflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# One `go build` for all commands: shared packages compile once. -s -w: no symbol table/DWARF
# (smaller, faster links); -trimpath keeps the cache independent of the checkout's location.
tmp="$(mktemp -d "$CACHE/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
nice -n 19 go build -trimpath -ldflags "-s -w $vflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kubectl \
  go.etcd.io/etcd/server/v3
mv "$tmp/server" "$tmp/etcd"

# The pod sandbox ("pause") program from the same Kubernetes release, compiled statically.
pause_src="$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
nice -n 19 gcc -Os -Wall -Werror -static -DVERSION="$K8S_VERSION-tunecluster" -o "$tmp/pause" "$pause_src"
strip "$tmp/pause"

# The registry and htpasswd from tools/ (its own module: its dependencies do not mix with Kubernetes').
tools_start=$(date +%s)
(cd tools && nice -n 19 go build -trimpath -ldflags "-s -w" -o "$tmp/" \
  github.com/distribution/distribution/v3/cmd/registry ./htpasswd ./sharedfs-provisioner)
# rancher/local-path-provisioner (the ReadWriteOnce class) from its own small module tools/local-path.
(cd tools/local-path && nice -n 19 go build -trimpath -ldflags "-s -w" -o "$tmp/" github.com/rancher/local-path-provisioner)
# kube-router (its network policy controller) from its own small module tools/kube-router: the
# requirements of kube-router's own go.mod, unchanged.
(cd tools/kube-router && nice -n 19 go build -trimpath -o "$tmp/" \
  -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION -X github.com/cloudnativelabs/kube-router/v2/pkg/version.BuildDate=1970-01-01T00:00:00Z" \
  github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
echo "build.sh: built registry, htpasswd, sharedfs-provisioner, local-path-provisioner and kube-router $KUBE_ROUTER_VERSION in $(( $(date +%s) - tools_start ))s" >&2

for b in "${BINARIES[@]}"; do mv -f "$tmp/$b" "$BIN/$b"; done
echo "$stamp" > "$BIN/.stamp"
took=$(( $(date +%s) - start ))
echo "$took" > "$BIN/.build-seconds"
echo "build.sh: built ${BINARIES[*]} in ${took}s ($((took / 60))m$((took % 60))s)" >&2
if [[ "${TUNECLUSTER_DROP_GO_CACHE:-}" == 1 ]]; then
  go clean -modcache && rm -rf "$GOCACHE"
  echo "build.sh: removed the Go build and module caches (TUNECLUSTER_DROP_GO_CACHE=1)" >&2
fi
echo "$BIN"
