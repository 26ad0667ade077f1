#!/usr/bin/env bash
# Browser test driver: playwright-core (no bundled browsers) from npm into tests/e2e/node_modules.
# The browser is Debian's chromium (infra/apt-packages.txt); nothing downloads a browser build.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v npm >/dev/null 2>&1; then
  echo "setup.d/browser: npm not found; the browser test will be skipped"; exit 0
fi
if [ ! -f tests/e2e/node_modules/playwright-core/package.json ] || \
   ! grep -q '"version": "1.64.1"' tests/e2e/node_modules/playwright-core/package.json; then
  (cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent)
fi
