#!/bin/sh
# The Debian packages Lighthouse needs beyond its Python wheels, in one list.
#   runtime: a CJK font, so that kiosk TVs and screenshots show Chinese, not empty boxes
#   test:    runtime + Debian's Chromium and Firefox ESR (the browser tests' WebRTC
#            clients), coturn (the TURN server the TURN tests relay through) and
#            GStreamer's RTSP server with Python bindings (the IP camera the duty tests
#            pull from)
#   build:   npm (Node.js), which fetches the console's chart library (web/package.json)
#            when the machine has no npm of its own
# Installs what is missing when run as root (apt-get); otherwise says what to run.
set -eu

RUNTIME="fonts-wqy-zenhei"
TEST="$RUNTIME chromium firefox-esr coturn python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"

case "${1:-test}" in
  runtime) wanted=$RUNTIME ;;
  test) wanted=$TEST ;;
  build) wanted="npm" ;;
  *) echo "usage: $0 [runtime|test|build]" >&2; exit 2 ;;
esac

missing=""
for package in $wanted; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing="$missing $package"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq $missing >/dev/null
else
  echo "Lighthouse needs these Debian packages:$missing" >&2
  echo "install them as root:  sudo apt-get install$missing" >&2
  exit 1
fi
