"""Home Assistant discovery (monitor/service/homeassistant.py): the device config as Home Assistant checks it,
rediscovery and ``ha-remove`` through the real daemon, and the entities the parents' answers add."""

import json
import signal

from daemon_helpers import DaemonProcess, publish, quiet_file, validate_ha_device_discovery, write_config
from monitor.core.events import DONT_KNOW, PARENT_REASONS
from monitor.service.homeassistant import EVENT_TYPES, NOT_A_CRY, discovery_payload, feedback_options


def test_discovery_offers_the_select_only_where_answers_are_heard():
    with_select = discovery_payload("crymonitor/n", "n", "Nursery", controls=True,
                                    feedback=feedback_options(True, False))["cmps"]
    select = with_select["last_cry_reason"]
    assert select["p"] == "select" and select["options"] == [*PARENT_REASONS, DONT_KNOW]
    assert "forget_not_a_cry" not in with_select
    assert select["command_topic"] == "crymonitor/n/set/last_cry_reason"
    assert select["state_topic"] == "crymonitor/n/last_cry_reason"
    assert "last_cry_reason" not in discovery_payload("crymonitor/n", "n", "Nursery", controls=True)["cmps"]


def test_discovery_offers_not_a_cry_with_its_button_and_counters_only_when_marks_are_on():
    cmps = discovery_payload("crymonitor/n", "n", "Nursery", controls=True, feedback=feedback_options(True, True))["cmps"]
    assert cmps["last_cry_reason"]["options"] == [*PARENT_REASONS, NOT_A_CRY, DONT_KNOW]
    assert cmps["forget_not_a_cry"]["p"] == "button"
    assert cmps["forget_not_a_cry"]["command_topic"] == "crymonitor/n/set/forget_not_a_cry"
    assert {cmps[k]["state_topic"] for k in ("not_a_cry_kept", "suppressed_today")} == {"crymonitor/n/not_a_cry"}
    assert feedback_options(False, False) == ()


def test_home_assistant_discovery_and_rediscovery(broker, subscriber_factory, tmp_path, capsys):
    sub = subscriber_factory(broker.port, "#")
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "ha1"),
                           "--input", str(quiet_file(tmp_path / "q.wav", 60)))
    try:
        msgs = sub.wait_for(lambda m: any(t == "homeassistant/device/crymonitor_ha1/config" for t, _, _ in m))
        config = json.loads([p for t, p, _ in msgs if t.endswith("/config")][0])
        validate_ha_device_discovery(config)
        assert config["cmps"]["crying"]["device_class"] == "sound"
        assert config["cmps"]["cry"]["event_types"] == list(EVENT_TYPES)
        assert config["avty"] == [{"t": "crymonitor/ha1/status", "pl_avail": "online", "pl_not_avail": "offline"}]
        assert config["cmps"]["last_cry"]["image_topic"] == "crymonitor/ha1/last_cry_picture"  # clips.picture on
        assert "qos" not in config and all(c["qos"] == 1 for c in config["cmps"].values())  # HA reads it here
        assert config["cmps"]["cries_today"]["state_class"] == "total_increasing"  # midnight reset is no drop
        sub.wait_for(lambda m: "online" in sub.payloads("status"))  # the daemon's own start is complete
        publish(broker.port, "homeassistant/status", b"online")  # Home Assistant restarted
        sub.wait_for(lambda m: sum(t.endswith("crymonitor_ha1/config") for t, _, _ in m) >= 2)
        sub.wait_for(lambda m: sub.payloads("status").count("online") >= 2)  # and the republish's
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0
    assert json.loads(sub.payloads("config")[-1]) == config
    # no cry yet: "uncertain", not HA's "unknown" (no data), and before the device is available
    first_online = [(t, p) for t, p, _ in sub.messages].index(("crymonitor/ha1/status", "online"))
    assert ("crymonitor/ha1/reason", "uncertain") in [(t, p) for t, p, _ in sub.messages[:first_online]]

    removed = subscriber_factory(broker.port, "homeassistant/device/crymonitor_ha1/config", client_id="rm")
    from monitor.cli import main

    capsys.readouterr()
    assert main(["ha-remove", "--config", str(tmp_path / "c.yaml")]) == 0
    removed.wait_for(lambda m: any(p == "" for _, p, _ in m))
    assert capsys.readouterr().out.splitlines() == [
        "removed device ha1 (homeassistant/device/crymonitor_ha1/config)",
        "no device ha1-replay to remove (homeassistant/device/crymonitor_ha1-replay/config was empty)"]
