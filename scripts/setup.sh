#!/usr/bin/env bash
# Installs everything wpclone needs on a Debian machine: apt packages, the virtualenv and our package.
# Idempotent and quick when already done (checks installed packages and a hash of the requirements).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  mariadb-server mariadb-client mydumper          # the local "shared MySQL" and its dump/load tools
  php-cli php-mysql php-gd php-xml php-mbstring   # WordPress runtime (served by php -S)
  wordpress wordpress-theme-twentytwentyone       # WordPress core from Debian + a classic theme
  default-libmysqlclient-dev pkg-config gcc       # build deps of mysqlclient (Airflow's MySQL provider)
  python3-venv make curl ca-certificates
  chromium                                        # headless browser of the UI tests (driven by Playwright)
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing apt packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.wpclone-requirements
want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python requirements into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  .venv/bin/pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
echo "setup: ready"
