"""What the daemon watches besides the cries (monitor/service/watch.py): a deaf microphone on the problem sensor."""

import json
import signal

import numpy as np
import soundfile as sf

from daemon_helpers import DaemonProcess, write_config


def test_digital_silence_is_reported_as_deaf_on_the_problem_sensor_only(broker, subscriber_factory, tmp_path):
    """Issue 23: ``status: deaf`` is neither of Home Assistant's availability payloads, so a HA restarted while the
    microphone was deaf showed every entity unavailable, *Microphone problem* too. ``status`` says the daemon is
    there; the deafness is the problem sensor's."""
    sub = subscriber_factory(broker.port, "crymonitor/deaf/#")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000 * 30, np.float32), 16000)
    config = write_config(tmp_path / "c.yaml", broker.port, "deaf", "audio:\n  deaf_after_seconds: 2\n")
    daemon = DaemonProcess(config, "--input", str(silent))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["problem"] for p in sub.payloads("diagnostics")), timeout=60)
        restarted_ha = subscriber_factory(broker.port, "#", client_id="restarted-ha")
        seen = restarted_ha.wait_for(lambda m: {"crymonitor/deaf/status", "crymonitor/deaf/diagnostics",
                                                "homeassistant/device/crymonitor_deaf/config"} <= {t for t, _, _ in m})
    finally:
        daemon.stop(signal.SIGTERM)
    retained = {t: p for t, p, _ in seen}
    availability = json.loads(retained["homeassistant/device/crymonitor_deaf/config"])["avty"][0]
    assert retained["crymonitor/deaf/status"] == availability["pl_avail"]
    assert json.loads(retained["crymonitor/deaf/diagnostics"])["problem"] is True
    sub.wait_for(lambda m: sub.payloads("status")[-1] == "offline")
    assert set(sub.payloads("status")) == {availability["pl_avail"], availability["pl_not_avail"]}
    diagnostics = json.loads([p for p in sub.payloads("diagnostics") if json.loads(p)["problem"]][-1])
    assert {"level_dbfs", "last_score", "inference_ms", "dropped_frames", "models", "uptime_s"} <= diagnostics.keys()
    assert diagnostics["level_dbfs"] == -120.0
