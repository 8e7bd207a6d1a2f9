#!/usr/bin/env bash
# Builds the control plane of the local cluster tier (kube-apiserver, kube-scheduler, kube-controller-manager,
# Kubernetes 1.20.2) from Debian's `kubernetes` source package, once per machine, into a cache outside the
# work tree:
#
#   ${WPCLONE_KUBE_DIR:-${XDG_CACHE_HOME:-~/.cache}/wpclone/kubernetes-1.20.2}/bin/
#
# `make kube-build` (and `make test`, `make cluster-up`) run it through `scripts/setup.sh --cluster`; it returns
# at once when the binaries are there. The first run installs golang-go and etcd-server with apt, fetches the
# source package (34 MB, with its vendor/ tree) without touching the system's apt configuration (a private
# deb-src list, lists and cache under the cache directory, for the archive and suite this machine already
# uses), and builds the three binaries the way Debian's rules do (a GOPATH whose k8s.io/kubernetes is the
# tree, no module proxy, static binaries): 7-8 minutes on 2 cores, ~250 MB of binaries. Everything but the
# binaries is removed afterwards. Safe to interrupt and rerun (each stage is redone or resumed; the Go build
# cache under the tree's _output survives an interrupted build); two runs at once wait for each other.
#
#   WPCLONE_KUBE_DIR       the cache directory (default above)
#   WPCLONE_DEBIAN_MIRROR  the Debian archive to fetch the source from (default: the one apt already uses)
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_UPSTREAM=1.20.2
BINARIES=(kube-apiserver kube-scheduler kube-controller-manager)
CACHE=${WPCLONE_KUBE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wpclone/kubernetes-$KUBE_UPSTREAM}
BIN=$CACHE/bin
WORK=$CACHE/work

say() { echo "kube-build: $*"; }
fail() { echo "kube-build: $*" >&2; exit 1; }

built() {
  local name
  for name in "${BINARIES[@]}"; do [ -x "$BIN/$name" ] || return 1; done
}

if built; then
  exit 0
fi

mkdir -p "$CACHE" || fail "cannot create the cache directory $CACHE; set WPCLONE_KUBE_DIR to a writable directory."
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  say "another build is running into $CACHE; waiting for it"
  flock 9
  if built; then exit 0; fi
fi

scripts/setup.sh --apt cluster
for tool in go etcd dpkg-source; do
  command -v "$tool" >/dev/null || fail "$tool is not installed; run scripts/setup.sh --apt cluster (and dpkg-dev)."
done

# -- the source package, through a private apt configuration ------------------------------------------------
debian_mirror() {  # the Debian archive this machine's apt already uses (deb822 or one-line sources)
  local uri
  uri=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
        2>/dev/null | head -n1 | tr -d ' ' || true)
  echo "${uri%/}"
}
MIRROR=${WPCLONE_DEBIAN_MIRROR:-$(debian_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$SUITE" ] || fail "cannot tell this machine's Debian suite from /etc/os-release (VERSION_CODENAME)."

APT_DIR=$WORK/apt
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$WORK/src"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" \
  > "$APT_DIR/sources.list"
APT_OPTS=(-o "Dir::Etc::sourcelist=$APT_DIR/sources.list" -o Dir::Etc::sourceparts=-
          -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache")
[ "$(id -u)" != 0 ] || APT_OPTS+=(-o APT::Sandbox::User=root)  # the cache may be where _apt cannot write

TREE=$WORK/src/tree
if [ ! -f "$TREE/.unpacked" ]; then
  say "fetching the source index of $SUITE from $MIRROR (private apt lists under $APT_DIR)"
  apt-get -q "${APT_OPTS[@]}" update >"$WORK/apt.log" 2>&1 && compgen -G "$APT_DIR/lists/*_Sources*" >/dev/null \
    || fail "apt could not read the source index of $SUITE from $MIRROR; see $WORK/apt.log."
  index=$(apt-cache "${APT_OPTS[@]}" showsrc kubernetes 2>>"$WORK/apt.log" || true)
  version=$(sed -n 's/^Version: //p' <<<"$index" | sort -V | tail -n1)
  [ -n "$version" ] || fail "the suite $SUITE of $MIRROR has no kubernetes source package."
  case "$version" in
    *"$KUBE_UPSTREAM"*) ;;
    *) fail "the suite $SUITE has kubernetes $version, not $KUBE_UPSTREAM; this script builds $KUBE_UPSTREAM." ;;
  esac
  say "downloading the source package kubernetes $version"
  (cd "$WORK/src" && apt-get -q "${APT_OPTS[@]}" source --download-only "kubernetes=$version" >>"$WORK/apt.log" 2>&1) \
    || fail "apt could not download the source package kubernetes $version; see $WORK/apt.log."
  say "unpacking it"
  rm -rf "$TREE" "$TREE.tmp"
  (cd "$WORK/src" && dpkg-source --no-check -x kubernetes_*.dsc "$TREE.tmp" >>"$WORK/apt.log" 2>&1) \
    || fail "dpkg-source could not unpack the kubernetes source package; see $WORK/apt.log."
  echo "$version" > "$TREE.tmp/.unpacked"
  mv "$TREE.tmp" "$TREE"
fi

# -- the build ------------------------------------------------------------------------------------------------
# `go build -mod=vendor` refuses the tree (go.mod would need updates); Debian's rules build it in GOPATH mode:
# a GOPATH whose src/k8s.io/kubernetes is the tree itself.
mkdir -p "$TREE/.go/src/k8s.io"
ln -sfn ../../.. "$TREE/.go/src/k8s.io/kubernetes"
LOG=$WORK/build.log
whats=()
for name in "${BINARIES[@]}"; do whats+=("cmd/$name"); done
say "building ${BINARIES[*]} (7-8 minutes on 2 cores; log: $LOG)"
started=$SECONDS
(
  while sleep 30 && kill -0 $$ 2>/dev/null; do  # ends with the script, however that ends
    say "still building ($((SECONDS - started)) s; $(du -sm "$TREE/_output" 2>/dev/null | cut -f1) MB built)"
  done
) &
ticker=$!
trap 'kill "$ticker" 2>/dev/null || true' EXIT
if ! (cd "$TREE/.go/src/k8s.io/kubernetes" \
      && env -u GOFLAGS GOPATH="$TREE/.go" GOPROXY=off CGO_ENABLED=0 \
         KUBE_GIT_VERSION="v$KUBE_UPSTREAM" KUBE_GIT_TREE_STATE=clean KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
         make WHAT="${whats[*]}") >"$LOG" 2>&1; then
  tail -n 20 "$LOG" >&2
  fail "building Kubernetes $KUBE_UPSTREAM failed after $((SECONDS - started)) s; see $LOG (rerun to resume)."
fi
kill "$ticker" 2>/dev/null || true

out=$TREE/_output/local/bin/linux/$(go env GOARCH)
rm -rf "$BIN.tmp"
mkdir -p "$BIN.tmp"
for name in "${BINARIES[@]}"; do
  [ -x "$out/$name" ] || fail "the build finished without $out/$name; see $LOG."
  cp "$out/$name" "$BIN.tmp/$name"
done
rm -rf "$BIN"
mv "$BIN.tmp" "$BIN"
say "built ${BINARIES[*]} in $((SECONDS - started)) s into $BIN ($(du -sm "$BIN" | cut -f1) MB)"
rm -rf "$WORK"  # the tree and the Go build cache: several GB, not needed again
