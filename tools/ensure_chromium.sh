#!/usr/bin/env bash
# Make sure a headless Chromium is available for tests/test_browser.py (Playwright drives the
# system browser: `playwright install` needs the internet, Debian's package does not).
#   tools/ensure_chromium.sh      install Debian's chromium if /usr/bin/chromium is missing
# Exits non-zero with the reason when Chromium is missing and cannot be installed, or cannot
# start; the browser tests fail with the same reason rather than skip.
set -euo pipefail

CHROMIUM=${LENET_COURSE_CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ] && [ "$CHROMIUM" != /usr/bin/chromium ]; then
  echo "ensure_chromium: LENET_COURSE_CHROMIUM=$CHROMIUM is not an executable file" >&2
  exit 1
fi
if [ ! -x "$CHROMIUM" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: $CHROMIUM is missing and apt-get is not available; install Chromium" \
         "and set LENET_COURSE_CHROMIUM to its path" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "ensure_chromium: $CHROMIUM is missing; run as root: apt-get install -y chromium" >&2
      exit 1
    fi
  fi
  echo "ensure_chromium: installing Debian's chromium package"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium fonts-liberation
fi

# A Chinese font, so that the Chinese edition's pages (tests/test_browser.py) are legible in the
# screenshots: WenQuanYi Micro Hei (5 MB; Noto CJK would be 60). Only where apt-get and root are.
if ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    echo "ensure_chromium: installing a Chinese font (fonts-wqy-microhei)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fonts-wqy-microhei \
      >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends fonts-wqy-microhei >/dev/null; } \
      || echo "ensure_chromium: no Chinese font installed; Chinese screenshots show boxes" >&2
  else
    echo "ensure_chromium: no Chinese font; for legible Chinese screenshots install fonts-wqy-microhei" >&2
  fi
fi

# A quick start: a headless Chromium that cannot print a blank page cannot run the tests.
if ! timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
     --disable-component-update --disable-sync --no-first-run --dump-dom about:blank \
     >/dev/null 2>/tmp/ensure_chromium.$$.log; then
  echo "ensure_chromium: $CHROMIUM is installed but does not start headless:" >&2
  tail -n 20 /tmp/ensure_chromium.$$.log >&2
  rm -f /tmp/ensure_chromium.$$.log
  exit 1
fi
rm -f /tmp/ensure_chromium.$$.log
echo "ensure_chromium: $("$CHROMIUM" --version 2>/dev/null | tail -n 1) is ready"
