#!/usr/bin/env bash
# Installs everything smi-streams needs on a fresh Debian machine, idempotently:
# Java 17, Maven, kcat, and Chromium with its driver for the page's browser test (Debian
# packages), a Python 3.11 virtualenv in .venv with the package and its dev tools, and the
# Kafka jars from Maven Central (into .data/kafka).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v kcat >/dev/null || missing+=(kcat)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

PY=$(command -v python3.11 || command -v python3)
if [ ! -x .venv/bin/python ] && ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: smi-streams needs Python 3.11 (the version it is pinned and tested on);" \
       "$PY is $("$PY" --version 2>&1). Install python3.11 and run this again." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  step "installing the package and its dev tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -e ".[dev]"
  touch .venv/.installed
fi

step "Kafka jars (Maven Central, once)"
.venv/bin/python - <<'PY'
from streams.broker import fetch
from streams.settings import BrokerSettings
print(fetch(BrokerSettings()))
PY
