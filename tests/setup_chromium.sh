#!/bin/sh
# Installs headless Chromium and its WebDriver (Debian packages `chromium` and
# `chromium-driver`) for tests/test_report.py. Idempotent: does nothing when both
# are already on PATH. Needs root (or sudo) and the Debian package mirrors.
set -eu
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
