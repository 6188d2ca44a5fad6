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
if [ "${1:-}" = "--test" ] && [ ! -d .cache/music/asc-music/files ]; then
  # Instrumental music (Debian's asc-music, GPL-2+) for the test that music without a voice is refused; fetched
  # from the package archive, never committed. benchmarks/bench_music.py keeps its music in the same place.
  mkdir -p .cache/music && rm -rf .cache/music/asc-music .cache/music/asc-music.tmp
  (
    cd .cache/music
    apt-get download -qq asc-music 2>/dev/null || { $sudo apt-get update -qq && apt-get download -qq asc-music; }
    dpkg-deb -x asc-music_*.deb asc-music.tmp && rm asc-music_*.deb
    mkdir asc-music && mv asc-music.tmp asc-music/files
  )
fi
requirements=(-r requirements.txt)
[ "${1:-}" = "--test" ] && requirements+=(-r requirements-test.txt)
python -m pip install -q --disable-pip-version-check "${requirements[@]}"
# Resemblyzer carries the pretrained GE2E speaker encoder that training converts into the model (Apache-2.0). Its
# own dependency webrtcvad imports pkg_resources, which current setuptools no longer has: webrtcvad-wheels provides
# the same module, so Resemblyzer is installed without its pinned dependencies (the rest are in requirements.txt).
python -m pip install -q --disable-pip-version-check --no-deps resemblyzer==0.1.4 webrtcvad-wheels==2.0.14.post1
# The packages themselves, editable: `import modeling` works from any folder, and edits here take effect. Built
# without isolation (offline-friendly), so the build backend pyproject.toml names comes from this environment: a new
# virtual environment's own setuptools can be too old to build an editable wheel.
python -m pip install -q --disable-pip-version-check "setuptools>=70.1"
python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
