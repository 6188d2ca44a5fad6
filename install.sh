#!/usr/bin/env bash
# Installs what ser needs on a Debian/Ubuntu machine: FFmpeg (decoding, via torchcodec) and the pinned
# Python packages, and this project's packages (editable). With --test, also Chromium and the test packages.
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
requirements=(-r requirements.txt)
[ "${1:-}" = "--test" ] && requirements+=(-r requirements-test.txt)
python -m pip install -q --disable-pip-version-check "${requirements[@]}"
# The packages themselves, editable: `import modeling` works from any folder, and edits here take effect.
python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
