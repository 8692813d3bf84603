#!/usr/bin/env bash
# Set up crymonitor on a fresh Debian/Ubuntu machine: system packages, then a virtualenv in .venv with the
# package installed editable (so the shipped models/ and config/ are used in place).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  libportaudio2                                          # PortAudio for sounddevice (microphone capture)
  mosquitto mosquitto-clients                            # MQTT broker: tests, and a local broker if you want one
  pulseaudio pulseaudio-utils libasound2-plugins         # headless virtual microphone for the capture tests
  systemd                                                # systemd-analyze for the unit-file tests
  espeak-ng                                              # synthetic speech for tools/make_soundscapes.py
)
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
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "crymonitor installed in .venv ($(.venv/bin/crymonitor --version))"
