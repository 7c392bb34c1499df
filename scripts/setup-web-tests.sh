#!/usr/bin/env bash
# Prepares the verifier page's browser test (tests/tests/web_verifier.rs), each step skipped
# when already done: Debian's chromium (no browser download), npm playwright-core from
# web/test/package-lock.json, and the page itself built into web/dist/ (scripts/build-web).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [ -z "${CHROMIUM:-}" ] && ! [ -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium for the page test ..."
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
STAMP="web/test/node_modules/.package-lock.sha256"
want="$(sha256sum web/test/package-lock.json | cut -d' ' -f1)"
if ! [ -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "installing playwright-core for the page test ..."
  (cd web/test && npm ci --no-audit --no-fund --silent)
  echo "$want" > "$STAMP"
fi
./scripts/build-web
