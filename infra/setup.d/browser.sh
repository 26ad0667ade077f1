#!/usr/bin/env bash
# Browser test driver: playwright-core (no bundled browsers) from npm into tests/e2e/node_modules, at the
# version tests/e2e/package-lock.json records. The browser is Debian's chromium (infra/apt-packages.txt);
# nothing downloads a browser build. Fails the set-up when any piece is missing: the browser test is part of
# `make test` and does not skip.
set -euo pipefail
cd "$(dirname "$0")/../.."
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
fail() { echo "setup.d/browser: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || fail "node not found: apt-get install nodejs (infra/apt-packages.txt)"
command -v npm >/dev/null 2>&1 || fail "npm not found: apt-get install npm (infra/apt-packages.txt)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "Node.js $(node --version) is too old: playwright-core needs Node.js >= 20"
[ -x "$CHROMIUM" ] || fail "$CHROMIUM not found: apt-get install chromium (infra/apt-packages.txt)"

want=$(node -p 'require("./tests/e2e/package-lock.json").packages["node_modules/playwright-core"].version')
have=$(node -p 'try { require("./tests/e2e/node_modules/playwright-core/package.json").version } catch { "" }')
if [ "$have" != "$want" ]; then
  (cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent) \
    || fail "npm ci in tests/e2e failed: playwright-core $want from the npm registry"
fi
# The driver loads and starts the browser headless (same flags as tests/e2e/ui_run.mjs).
(cd tests/e2e && CHROMIUM="$CHROMIUM" timeout 60 node --input-type=module -e '
import { chromium } from "playwright-core";
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
console.log(`setup.d/browser: playwright-core drives chromium ${browser.version()}`);
await browser.close();
') || fail "playwright-core could not start $CHROMIUM headless"
