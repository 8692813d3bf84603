"""The unit files (systemd/) pass systemd's own checks."""

import shutil
import subprocess

import pytest

from conftest import ROOT, need

UNIT = ROOT / "systemd" / "crymonitor.service"
TEMPLATE = ROOT / "systemd" / "crymonitor@.service"
# the only lines a room's unit may add or change
PER_ROOM = {"Description=crymonitor baby cry monitor (%i)",
            "ExecStart=/opt/crymonitor/.venv/bin/crymonitor run --config /etc/crymonitor/%i.yaml",
            "Environment=CRYMONITOR_INSTANCE=%i", "StateDirectory=crymonitor/%i"}


@pytest.fixture
def unit_copy(tmp_path):
    """The unit with ExecStart pointed at an existing binary: verify checks that the command exists."""
    text = UNIT.read_text().replace("/opt/crymonitor/.venv/bin/crymonitor", shutil.which("true") or "/bin/true")
    path = tmp_path / "crymonitor.service"
    path.write_text(text)
    return path


def test_unit_verifies_without_any_warning(unit_copy):
    out = subprocess.run([need("systemd-analyze"), "verify", str(unit_copy)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


def test_the_room_template_is_the_unit_with_per_room_paths_and_verifies(tmp_path):
    settings = lambda text: {l for l in text.splitlines() if l and not l.startswith("#")}  # noqa: E731
    unit, template = settings(UNIT.read_text()), settings(TEMPLATE.read_text())
    assert template - unit == PER_ROOM
    assert unit - template == {"Description=crymonitor baby cry monitor", "StateDirectory=crymonitor",
                               "ExecStart=/opt/crymonitor/.venv/bin/crymonitor run --config /etc/crymonitor/crymonitor.yaml"}
    instance = tmp_path / "crymonitor@nursery.service"
    instance.write_text(TEMPLATE.read_text().replace("/opt/crymonitor/.venv/bin/crymonitor", shutil.which("true")))
    out = subprocess.run([need("systemd-analyze"), "verify", str(instance)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


def test_unit_security_exposure_is_at_most_3(unit_copy):
    out = subprocess.run([need("systemd-analyze"), "security", "--offline=true", str(unit_copy)],
                         capture_output=True, text=True)
    line = [l for l in out.stdout.splitlines() if "Overall exposure level" in l][0]
    exposure = float(line.split(":")[1].split()[0])
    assert exposure <= 3.0, line


def test_unit_keeps_sound_devices_reachable():
    text = UNIT.read_text()
    for needed in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "DeviceAllow=char-alsa",
                   "SupplementaryGroups=audio", "StateDirectory=crymonitor", "ProtectSystem=strict",
                   "NoNewPrivileges=yes", "RestrictAddressFamilies="):
        assert needed in text
    assert "PrivateDevices=yes" not in text  # it would hide /dev/snd
