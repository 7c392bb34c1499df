#!/usr/bin/env bash
# Installs Debian's faketime (libfaketime) for the clock-skew test (tests/tests/clock_skew.rs),
# which shifts the wall clocks of real node processes; skipped when already installed.
set -euo pipefail
if ! [ -f /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ]; then
  echo "installing Debian's faketime for the clock-skew test ..."
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq faketime >/dev/null
fi
