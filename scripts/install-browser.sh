#!/bin/sh
# Chromium for the HTML report's browser tests and benchmark (tests/test_report_browser.py,
# bench/report_bench.py). They drive Debian's /usr/bin/chromium with Playwright; no browser is
# downloaded by Playwright. Idempotent: does nothing when chromium is already there.
set -eu
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium (apt-get) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo installed)"
    exit 0
fi
echo "chromium is not installed at $CHROMIUM; the browser tests of the HTML report will be skipped." >&2
if command -v apt-get >/dev/null 2>&1; then
    echo "Install it with:  sudo apt-get update && sudo apt-get install -y chromium" >&2
else
    echo "Install Chromium with your system's package manager and set CHROMIUM=/path/to/chromium." >&2
fi
exit 0
