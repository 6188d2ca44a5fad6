#!/usr/bin/env bash
# Installs what ser needs on a Debian/Ubuntu machine: FFmpeg (decoding, via torchcodec) and the pinned
# Python packages. With --test, also Chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
packages=()
command -v ffmpeg >/dev/null || packages+=(ffmpeg)
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null || packages+=(chromium)
fi
if [ ${#packages[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi
python -m pip install -q --disable-pip-version-check -r requirements.txt
