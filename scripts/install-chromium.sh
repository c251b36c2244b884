#!/bin/sh
# Debian's chromium for the dashboard's browser tests (tests/browser): installed when /usr/bin/chromium is
# missing and apt-get is usable (as root, or through passwordless sudo). Playwright's own browser download
# cannot work here, so it is never tried. Never fails: without a browser the tests skip, saying so loudly.
set -u
if [ -n "${CHROMIUM:-}" ] || [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "make browser: NO CHROMIUM and no apt-get: the dashboard's browser tests will SKIP" >&2
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "make browser: NO CHROMIUM and apt-get needs root: the dashboard's browser tests will SKIP" >&2
    exit 0
fi
echo "make browser: installing Debian's chromium (apt-get install chromium)"
export DEBIAN_FRONTEND=noninteractive
$as_root apt-get install -y -q chromium >/dev/null \
    || { $as_root apt-get update -q >/dev/null && $as_root apt-get install -y -q chromium >/dev/null; } \
    || echo "make browser: apt-get install chromium FAILED: the dashboard's browser tests will SKIP" >&2
exit 0
