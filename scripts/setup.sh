#!/usr/bin/env bash
# Installs what wpclone needs on a Debian machine. The one install script: `make setup` runs it with no
# arguments, and the images (images/*/Dockerfile) run it with a named package set, so CI exercises the
# same commands the images use.
#
#   scripts/setup.sh                  everything for development: apt set `dev`, the virtualenv .venv with
#                                     requirements-dev.txt, this package (editable) and the rewrite's compiled
#                                     engine built in place (plugins/wpclone/_rewrite_core*.so). Idempotent
#                                     and quick when already done (checks installed packages, a hash of the
#                                     requirements, and the engine's build against its source).
#   scripts/setup.sh --cluster        the cluster tier's control plane: apt set `cluster` and the Kubernetes
#                                     binaries built once per machine (scripts/kube-build.sh; at once when
#                                     they are there). `make test`, `make kube-build` and `make cluster-up`
#                                     run it; plain `make setup` does not (the demo needs no cluster).
#   scripts/setup.sh --apt SET...     only the apt packages of the named sets (toolbox, airflow, dev, ...)
#   scripts/setup.sh --pip SET        only the Python packages of a set into the current interpreter
#                                     ($PYTHON, default python3): `toolbox` (what the pods run: TOOLBOX_PIP at
#                                     their requirements.txt pins + this package) or `airflow`
#                                     (requirements.txt + this package); no virtualenv, no editable install.
#                                     Installing the package builds the compiled engine (setup.py) with the
#                                     image's Python headers and the apt set's gcc; without them the package
#                                     installs all the same and the rewrite runs its Python engine.
#   scripts/setup.sh --list SET       print the apt packages of a set, one per line (tests read this)
#   scripts/setup.sh --list-pip SET   print the pinned pip requirements of a set, one per line (tests too)
set -euo pipefail
cd "$(dirname "$0")/.."

# apt package groups
APT_MARIADB_SERVER=(mariadb-server mydumper)                 # the local "shared MySQL" and its fast loader
APT_MARIADB_CLIENT=(mariadb-client)                          # mariadb-dump and mariadb: the copy steps
APT_PHP=(php-cli php-mysql php-gd php-xml php-mbstring)      # WordPress runtime and checks (php -S, php -r)
APT_WORDPRESS=(wordpress wordpress-theme-twentytwentyone wordpress-theme-twentytwentythree)  # core + a classic and a block theme
APT_BUILD=(default-libmysqlclient-dev pkg-config gcc)        # build deps of mysqlclient (MySQL provider)
APT_CORE=(gcc libc6-dev)                                     # the rewrite's compiled engine (setup.py)
APT_PYTHON_DEV=(python3-dev)                                 # headers of Debian's python3 (the .venv's)
APT_BASE=(python3-venv make curl ca-certificates)
APT_BROWSER=(chromium)                                       # headless browser of the UI tests (Playwright)
APT_CLUSTER=(golang-go etcd-server dpkg-dev)                 # the cluster tier: builds and runs its control plane

# pip packages of the toolbox image, each at its requirements.txt pin: what the modules the pods run
# (python -m wpclone.steps, python -m wpclone.k8s.content) import. tests/deploy/test_images.py derives
# those imports from the modules' import graph and holds this list to them.
TOOLBOX_PIP=(PyMySQL httpx zstandard pydantic)

# named sets
apt_set() {
  case "$1" in
    dev) echo "${APT_MARIADB_SERVER[@]} ${APT_MARIADB_CLIENT[@]} ${APT_PHP[@]} ${APT_WORDPRESS[@]}" \
              "${APT_BUILD[@]} ${APT_CORE[@]} ${APT_PYTHON_DEV[@]} ${APT_BASE[@]} ${APT_BROWSER[@]}" ;;
    toolbox) echo "${APT_MARIADB_CLIENT[@]} ${APT_PHP[@]} ${APT_CORE[@]} ca-certificates" ;;
    airflow) echo "${APT_BUILD[@]} ${APT_CORE[@]} ${APT_MARIADB_CLIENT[@]}" ;;
    cluster) echo "${APT_CLUSTER[@]}" ;;
    *) echo "setup: unknown apt package set '$1' (dev, toolbox, airflow, cluster)" >&2; return 2 ;;
  esac
}

install_apt() {
  local pkgs=() missing=() more=() set pkg out
  for set in "$@"; do
    out=$(apt_set "$set") || exit 2
    read -r -a more <<<"$out"
    pkgs+=("${more[@]}")
  done
  for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "setup: installing apt packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

pinned() {  # the pinned requirement line of one package from requirements.txt
  grep -iE "^$1==" requirements.txt || { echo "setup: $1 is not pinned in requirements.txt" >&2; return 2; }
}

pip_set() {  # the pinned requirement lines of a pip set
  local pkg line
  case "$1" in
    toolbox) for pkg in "${TOOLBOX_PIP[@]}"; do line=$(pinned "$pkg") || return 2; echo "$line"; done ;;
    airflow) grep -vE '^\s*(#|$)' requirements.txt ;;
    *) echo "setup: unknown pip package set '$1' (toolbox, airflow)" >&2; return 2 ;;
  esac
}

install_pip() {
  local python="${PYTHON:-python3}" out reqs=()
  out=$(pip_set "$1") || exit 2
  mapfile -t reqs <<<"$out"
  if [ "$1" = airflow ]; then
    "$python" -m pip install --no-cache-dir -q -r requirements.txt
  else
    "$python" -m pip install --no-cache-dir -q "${reqs[@]}"
  fi
  "$python" -m pip install --no-cache-dir -q --no-deps .
}

build_core() {  # the rewrite's compiled engine, in place next to its source; skipped when up to date
  local so
  .venv/bin/python setup.py -q build_ext --inplace >/dev/null 2>&1 || true
  so=$(compgen -G "plugins/wpclone/_rewrite_core*.so" | head -n1)
  if [ -z "$so" ] || [ plugins/wpclone/_rewrite_core.c -nt "$so" ]; then
    echo "setup: the rewrite's compiled engine did not build (.venv/bin/python setup.py build_ext --inplace" \
         "says why); the rewrite runs its Python engine" >&2
  fi
}

install_dev() {
  install_apt dev
  local python="${PYTHON:-python3}"
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  local stamp=.venv/.wpclone-requirements want
  want=$(cat requirements.txt requirements-dev.txt pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python requirements into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r requirements-dev.txt
    .venv/bin/pip install -q --no-deps -e .
    echo "$want" > "$stamp"
  fi
  build_core
}

case "${1:-}" in
  "") install_dev ;;
  --cluster) [ $# -eq 1 ] || { echo "setup: --cluster takes no argument" >&2; exit 2; }; scripts/kube-build.sh ;;
  --apt) shift; [ $# -gt 0 ] || { echo "setup: --apt needs a package set" >&2; exit 2; }; install_apt "$@" ;;
  --pip) [ $# -eq 2 ] || { echo "setup: --pip needs one package set" >&2; exit 2; }; install_pip "$2" ;;
  --list) [ $# -eq 2 ] || { echo "setup: --list needs one package set" >&2; exit 2; }
          listed=$(apt_set "$2") || exit 2; read -r -a listed <<<"$listed"; printf '%s\n' "${listed[@]}"; exit 0 ;;
  --list-pip) [ $# -eq 2 ] || { echo "setup: --list-pip needs one package set" >&2; exit 2; }
          pip_set "$2" || exit 2; exit 0 ;;
  *) echo "setup: unknown option '$1' (none, --cluster, --apt SET..., --pip SET, --list SET, --list-pip SET)" >&2
     exit 2 ;;
esac
echo "setup: ready"
