#!/usr/bin/env bash
# Installs iproute2 (`ip netns`, veth pairs) for the network-namespace tests
# (tests/tests/netns.rs), which need root; skipped when `ip` is already there.
set -euo pipefail
if ! command -v ip >/dev/null; then
  echo "installing iproute2 for the network-namespace tests ..."
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iproute2 >/dev/null
fi
