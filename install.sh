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
# Files of a Debian package, unpacked into .cache/DEST/files: fetched from the package archive, never committed.
debian_files() {
  local package=$1 dest=.cache/$2
  [ -d "$dest/files" ] && return
  mkdir -p "$(dirname "$dest")" && rm -rf "$dest" "$dest.tmp" && mkdir -p "$dest.tmp"
  (
    cd "$dest.tmp"
    apt-get download -qq "$package" 2>/dev/null || { $sudo apt-get update -qq && apt-get download -qq "$package"; }
    dpkg-deb -x "$package"_*.deb files && rm "$package"_*.deb
  )
  mv "$dest.tmp" "$dest"
}
if [ "${1:-}" = "--test" ]; then
  # Instrumental music (asc-music, GPL-2+) for the test that music without a voice is refused and for the
  # robustness benchmark's music bed; benchmarks/bench_music.py keeps its music in the same place.
  debian_files asc-music music/asc-music
  # Recorded city sounds and music of LinCity-NG (GPL-2+), at 16 kHz, in two sets that share no recording: street,
  # rail, crowd, harbour and water recordings are the robustness benchmark's environmental noise (held-out/); the
  # other recordings and the game's music, cut into 5 s pieces so that music is drawn about as often as the rest, are
  # the backgrounds the bundled recipe trains with (training/).
  lincity=.cache/sounds/lincity-ng
  if [ ! -d $lincity/training ]; then
    debian_files lincity-ng-data sounds/lincity-ng
    game=$lincity/files/usr/share/games/lincity-ng
    rm -rf $lincity/held-out $lincity/training.tmp && mkdir -p $lincity/held-out $lincity/training.tmp
    to16k() { ffmpeg -nostdin -v error -i "$1" -ac 1 -ar 16000 "${@:2}"; }
    for sound in $game/sounds/*.wav; do
      name=$(basename "$sound")
      case $name in
        Trafic* | DirtTrack* | RailTrain* | SportsCroud* | Market* | Harbor* | Water*) to16k "$sound" $lincity/held-out/"$name" ;;
        Click.wav | Window*) ;;  # interface clicks, not surroundings
        *) to16k "$sound" $lincity/training.tmp/"$name" ;;
      esac
    done
    i=0
    for track in $game/music/default/*.ogg; do
      i=$((i + 1))
      to16k "$track" -f segment -segment_time 5 $lincity/training.tmp/music$i-%03d.wav
    done
    rm -rf $lincity/files && mv $lincity/training.tmp $lincity/training
  fi
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
