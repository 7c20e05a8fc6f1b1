#!/usr/bin/env bash
# The browser check of the web page (gateway/web/index.html) against a running ringchat:
#
#   deploy/check-browser.sh http://127.0.0.1:8080
#
# Two people (two browser contexts) register, log in, chat live, read history, use the world
# room and log out through the page in headless Chromium, then the same page served from
# another origin proves CORS. Prints "ok: ..." per step and "RESULT: OK" (exit 0) or
# "RESULT: FAIL <reason>" (exit 1).
#
# It needs Debian's chromium and npm's playwright-core; both are installed here when
# missing, and it fails (never skips) when either cannot be had. playwright-core is kept in
# ${RINGCHAT_TOOLS:-/var/tmp/ringchat-tools}/node. Set CHROMIUM to use another browser binary
# (then nothing is installed with apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYWRIGHT_CORE_VERSION=1.65.1
TOOLS="${RINGCHAT_TOOLS:-/var/tmp/ringchat-tools}"
NODE_DIR="$TOOLS/node"

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: deploy/check-browser.sh BASE_URL   (e.g. http://127.0.0.1:8080)"
BASE_URL="$1"

command -v node >/dev/null || die "node not found: install Node.js 18 or newer (apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm not found: install it (apt-get install npm)"

# Debian's Chromium (playwright's own browser download does not work here, so no
# 'npx playwright install').
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  [ "$CHROMIUM" = /usr/bin/chromium ] || die "CHROMIUM=$CHROMIUM is not an executable"
  command -v apt-get >/dev/null || die "/usr/bin/chromium missing and no apt-get to install it"
  say "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  # waits for the dpkg lock: deploy/test.sh may be installing an engine at the same time
  apt="apt-get -o DPkg::Lock::Timeout=900"
  if ! $apt install -y chromium; then
    $apt update || die "apt-get update failed: cannot install chromium"
    $apt install -y chromium || die "cannot install chromium with apt-get"
  fi
  [ -x /usr/bin/chromium ] || die "chromium installed but /usr/bin/chromium is missing"
fi
export CHROMIUM
"$CHROMIUM" --version 2>/dev/null || true

# playwright-core (the driver only, no browsers), pinned.
have_pw() {
  [ -f "$NODE_DIR/node_modules/playwright-core/package.json" ] &&
    [ "$(node -p "require('$NODE_DIR/node_modules/playwright-core/package.json').version" 2>/dev/null)" = "$PLAYWRIGHT_CORE_VERSION" ]
}
if ! have_pw; then
  say "installing playwright-core@$PLAYWRIGHT_CORE_VERSION in $NODE_DIR"
  mkdir -p "$NODE_DIR"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$NODE_DIR" --no-audit --no-fund \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION" || die "cannot install playwright-core@$PLAYWRIGHT_CORE_VERSION with npm"
  have_pw || die "playwright-core@$PLAYWRIGHT_CORE_VERSION not found in $NODE_DIR after npm install"
fi
say "playwright-core $PLAYWRIGHT_CORE_VERSION"

[ "${CHECK_BROWSER_INSTALL_ONLY:-}" = 1 ] && exit 0

NODE_PATH="$NODE_DIR/node_modules" exec node gateway/tests/browser/check.js "$BASE_URL"
