"""Issue 12: what a user or a fault did that used to break the daemon, each reproduced with real parts."""

import signal
import time

import numpy as np
import soundfile as sf
import structlog

from daemon_helpers import DaemonProcess, write_config
from monitor.config import Config, override
from monitor.service.daemon import Daemon


def test_an_infinite_number_in_the_state_file_is_ignored_with_a_logged_error(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text('{"stats": {"day": "2026-12-02", "cries_today": 1e999}}')
    config = override(override(Config(), "mqtt", enabled=False), "state", dir=str(state))
    with structlog.testing.capture_logs() as logs:
        daemon = Daemon(config)
    assert daemon.stats.cries_today == 0
    assert any(r["event"] == "state_file_ignored" and "infinity" in r["error"] for r in logs)


def test_a_sighup_while_the_models_load_is_a_reload_not_a_death(broker, tmp_path):
    config = write_config(tmp_path / "c.yaml", broker.port, "hup")
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(30 * 16000, np.float32) + 1e-3, 16000)
    daemon = DaemonProcess(config, "--input", str(quiet))
    time.sleep(0.3)  # the interpreter is up, the models are not loaded yet
    daemon.proc.send_signal(signal.SIGHUP)
    try:
        daemon.wait_log("reload_requested_while_starting")
        daemon.wait_log("config_reloaded")
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.stderr
