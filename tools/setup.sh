#!/usr/bin/env bash
# Set up crymonitor on a fresh Debian/Ubuntu machine: system packages, then a virtualenv in .venv with the
# package installed editable (so the shipped models/ and config/ are used in place).
#   bash tools/setup.sh          development: both runtimes (ONNX Runtime and torch), the tools and the tests
#   bash tools/setup.sh --edge   a box that only listens: ONNX Runtime, no torch (its size: docs/deployment.md)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="test"
if [ "${1:-}" = "--edge" ]; then
  EXTRAS="edge"
elif [ -n "${1:-}" ]; then
  echo "usage: bash tools/setup.sh [--edge]" >&2; exit 2
fi

APT_PACKAGES=(
  libportaudio2                                          # PortAudio for sounddevice (microphone capture)
  mosquitto mosquitto-clients                            # MQTT broker: tests, and a local broker if you want one
)
if [ "$EXTRAS" = "test" ]; then
  APT_PACKAGES+=(
    pulseaudio pulseaudio-utils libasound2-plugins       # headless virtual microphone for the capture tests
    systemd                                              # systemd-analyze for the unit-file tests
    espeak-ng                                            # synthetic speech for tools/make_soundscapes.py
    qemu-user                                            # a CPU without VNNI, emulated, for the int8 detector test
  )
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
echo "crymonitor installed in .venv ($(.venv/bin/crymonitor --version))"
