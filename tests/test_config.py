"""The configuration (monitor/config.py): the shipped file and the defaults, errors named by file, line and key, the
fuzzed file, the model paths, and the device of a templated service's room."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import ROOT
from daemon_helpers import DaemonProcess, quiet_file
from monitor.cli import main
from monitor.config import ClassifierConfig, Config, ConfigError, load_config, override, parse_config

def test_shipped_config_is_valid_and_documents_the_defaults():
    shipped = load_config(ROOT / "config" / "crymonitor.yaml")
    assert shipped == Config()  # the documented file and the built-in defaults never drift apart
    documented = yaml.safe_load((ROOT / "config" / "crymonitor.yaml").read_text())
    for section in dataclasses.fields(Config):
        keys = {f.name for f in dataclasses.fields(getattr(Config(), section.name))}
        assert set(documented[section.name]) == keys, f"{section.name}: every key, and only real keys, documented"


def test_no_file_gives_defaults():
    assert load_config(None) == Config()


@pytest.mark.parametrize(
    "text, message",
    [
        ("audio:\n  devcie: 3\n", "x.yaml:2: audio.devcie: unknown key"),
        ("colour: red\n", "x.yaml:1: colour: unknown key"),
        ("events:\n  start_threshold: 0.9\n  end_threshold: 1.5\n", "x.yaml:3: events.end_threshold: must be in"),
        ("mqtt:\n  port: '1883x'\n", "x.yaml:2: mqtt.port: expected int"),
        ("mqtt:\n  tls: 1\n", "x.yaml:2: mqtt.tls: expected bool"),
        ("detector:\n  device: gpu\n", "x.yaml:2: detector.device: must be one of cpu, cuda, auto"),
        ("classifier:\n  enabled: true\n  adaptation: mean\n", "x.yaml:3: classifier.adaptation: must be one of "
         "auto, prior, majority, prototypes, off, true or false (unquoted), got 'mean'"),
        ("classifier:\n  adaptation: 1\n", "x.yaml:2: classifier.adaptation: expected bool or str, got int 1"),
        ("events: [1, 2]\n", "x.yaml:1: events: expected a mapping"),
        ("audio:\n  device: [\n", "x.yaml:3: invalid YAML"),
        ("events:\n  confirm_windows: 5\n  of_windows: 4\n", "confirm_windows must not exceed"),
        ("events:\n  start_threshold: .nan\n", "x.yaml:2: events.start_threshold: must be a finite number"),
        ("events:\n  end_hold_seconds: 0\n", "x.yaml:2: events.end_hold_seconds: must be in"),
        ("mqtt:\n  tls_ca_file: /nonexistent/ca.pem\n", "mqtt.tls_ca_file: /nonexistent/ca.pem does not exist"),
        # values that once ended in a traceback (issue 24)
        ("classifier:\n  baby:\n    birth_date: 2026-02-30\n", "x.yaml:3: invalid YAML ('2026-02-30': day is out of range"),
        ("audio:\n  channels: " + "1" * 4301 + "\n", "x.yaml:2: invalid YAML ('1111"),
        ("mqtt:\n  ? [a, b]\n  : 1\n", "x.yaml:2: a key must be a name, not a list"),
        ("? {a: 1}\n: 1\n", "x.yaml:1: a key must be a name, not a mapping"),
        ("mqtt:\n  host: a\n  base_topic: $SYS\n", "x.yaml:3: mqtt.base_topic: '$SYS' starts with $"),
        ("homeassistant:\n  prefix: $ha\n", "x.yaml:2: homeassistant.prefix: '$ha' starts with $"),
        ("mqtt:\n  device_id: 'a/#'\n", "x.yaml:2: mqtt.device_id: 'a/#' is not a valid MQTT topic level"),
    ],
)
def test_bad_config_names_key_and_line(text, message):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.yaml")
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


@pytest.mark.parametrize("value, parsed, runs", [
    ("prior", "prior", "prior"), ("majority", "majority", "majority"), ("prototypes", "prototypes", "prototypes"),
    ("'off'", "off", "off"), ("auto", "auto", "majority"),
    ("on", True, "prototypes"), ("true", True, "prototypes"), ("off", False, "off"),  # what true / false meant
])
def test_classifier_adaptation_names_a_learner_and_still_takes_true_and_false(value, parsed, runs):
    from monitor.inference.classify import adaptation_setting

    config = parse_config(f"classifier:\n  adaptation: {value}\n", "x.yaml")
    assert config.classifier.adaptation == parsed
    assert adaptation_setting(config.classifier.adaptation, "majority") == runs  # auto: the study's choice


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detector:\n  model: sub/m.pt\n")
    assert load_config(path).detector.model == tmp_path / "sub" / "m.pt"


def test_a_models_path_not_beside_the_config_is_the_shipped_model_of_that_name(tmp_path):
    """config/crymonitor.yaml says ../models/…: copied to /etc/crymonitor, or used with an installed wheel, it
    still names the shipped models; a file that is there beside the config wins, and an unknown name stays."""
    from monitor.config import MODELS_DIR

    path = tmp_path / "etc" / "c.yaml"
    path.parent.mkdir()
    path.write_text((ROOT / "config" / "crymonitor.yaml").read_text())
    assert load_config(path).detector.model == MODELS_DIR / "detector-yamnet-lwf-int8.onnx"
    assert load_config(path).classifier.model == MODELS_DIR / "classifier.onnx"
    path.write_text("detector:\n  model: models/detector-yamnet-lwf-int8.onnx\n")
    assert load_config(path).detector.model == MODELS_DIR / "detector-yamnet-lwf-int8.onnx"
    (tmp_path / "etc" / "models").mkdir()
    (tmp_path / "etc" / "models" / "detector-yamnet-lwf-int8.onnx").write_bytes(b"mine")
    assert load_config(path).detector.model == tmp_path / "etc" / "models" / "detector-yamnet-lwf-int8.onnx"
    for other in ("models/no-such-model.onnx", "elsewhere/detector-yamnet-lwf-int8.onnx"):
        path.write_text(f"detector:\n  model: {other}\n")
        assert load_config(path).detector.model == (tmp_path / "etc" / other).resolve()


def test_cli_override_is_validated():
    assert override(Config(), "mqtt", port=1999).mqtt.port == 1999
    with pytest.raises(ConfigError, match="--mqtt.port: must be in"):
        override(Config(), "mqtt", port=70000)


def test_password_comes_from_file_or_env_and_is_never_printed(tmp_path, monkeypatch, capsys):
    secret = tmp_path / "pw"
    secret.write_text("s3cret-value\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mqtt:\n  username: parent\n  password_file: {secret}\n")
    assert load_config(cfg).mqtt.password() == "s3cret-value"
    monkeypatch.setenv("CRYMONITOR_MQTT_PASSWORD", "from-env")
    assert Config().mqtt.password() == "from-env"
    assert main(["check-config", str(cfg)]) == 0
    assert "s3cret-value" not in capsys.readouterr().out


def test_quiet_hours_off_in_the_file_means_none_as_over_mqtt():
    from monitor.core.control import ControlState

    config = parse_config('events:\n  quiet_hours: "OFF"\n')
    assert ControlState.from_payload({"quiet_hours": config.events.quiet_hours}).quiet_hours is None
    with pytest.raises(ConfigError, match="quiet_hours must be HH:MM-HH:MM or OFF"):
        parse_config('events:\n  quiet_hours: "late"\n')


@pytest.mark.parametrize("key, model, message", [
    ("classifier", "detector-int8.onnx", "classifier.model: detector-int8.onnx is a cry detector"),
    ("detector", "classifier.pt", "detector.model: classifier.pt is a reason classifier"),
])
def test_check_config_refuses_a_model_of_the_wrong_kind(tmp_path, key, model, message):
    config = tmp_path / "c.yaml"
    config.write_text(f"logging:\n  level: info\n{key}:\n  model: {ROOT / 'models' / model}\n")
    out = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(config)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith(f"crymonitor: error: {config}:4: {message}")
    assert out.stderr.count("\n") == 1, out.stderr


NASTY_VALUES = ["", "  ", "\x00", "\ud800", "a" * 70_000, "#", "+/x", "/lead", "trail/", "OFF", "off", "22:00-06:00",
                "1" * 400, 10**400, -1, 0, 0.5, 1e308, float("inf"), float("nan"), True, None, [], {}, [1, [2]],
                "../models/detector.pt", "/dev/null", "~/x", "tls", "ünïcødé", "\n"]


RAW_YAML_VALUES = ["2026-02-30", "2026-13-01", "0000-00-00", "2026-02-29", "1" * 4301, "-" + "9" * 5000, "$SYS",
                   "$SYS/broker", "'$x'", "[a, b]", "{a: 1}", ".inf", "-.nan", "0x" + "f" * 5000, "1_000", "0o777"]


def yaml_variants(count: int, seed: int = 12):
    """Seeded variants of the shipped config: one key set to a nasty value (as JSON, or as raw YAML: impossible
    dates, integers past 4,300 digits, $ topics, lists and mappings), a section duplicated, aliases, deep nesting,
    or a list or mapping as a key."""
    rng = np.random.default_rng(seed)
    shipped = yaml.safe_load((ROOT / "config" / "crymonitor.yaml").read_text())
    keys = [(section, key) for section, values in shipped.items() for key in values]
    keys += [(section, f"{key}:\n    {sub}") for section, values in shipped.items() for key, inner in values.items()
             if isinstance(inner, dict) for sub in inner]  # nested sections (classifier.baby) too
    for i in range(count):
        kind = i % 8
        if kind <= 2:
            section, key = keys[rng.integers(len(keys))]
            value = NASTY_VALUES[rng.integers(len(NASTY_VALUES))]
            yield f"{section}:\n  {key}: {json.dumps(value, ensure_ascii=bool(rng.integers(2)))}\n"
        elif kind == 3:
            section = keys[rng.integers(len(keys))][0]
            yield f"{section}: {{}}\nmqtt:\n  host: a\n{section}:\n  {{}}\n"
        elif kind == 4:
            depth = int(rng.integers(5, 600))
            yield "".join(f"{'  ' * d}k{d}:\n" for d in range(depth)) + "  " * depth + "v: 1\n"
        elif kind == 6:
            section, key = keys[rng.integers(len(keys))]
            yield f"{section}:\n  {key}: {RAW_YAML_VALUES[rng.integers(len(RAW_YAML_VALUES))]}\n"
        elif kind == 7:
            section = keys[rng.integers(len(keys))][0]
            yield f"{section}:\n  ? {['[a, b]', '{a: 1}', '[]'][rng.integers(3)]}\n  : 1\n"
        else:
            levels = int(rng.integers(2, 10))
            lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
            lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, levels)]
            yield "\n".join(lines) + f"\nmqtt:\n  host: *a{levels - 1}\n"


@pytest.mark.slow  # seconds of real work: the full suite, not the fast lane
def test_config_fuzz_every_variant_loads_or_is_one_config_error():
    outcomes = {"loaded": 0, "rejected": 0}
    for text in yaml_variants(480):
        started = time.monotonic()
        try:
            parse_config(text, "fuzz.yaml")
            outcomes["loaded"] += 1
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("fuzz.yaml"), str(exc)
            outcomes["rejected"] += 1
        assert time.monotonic() - started < 2.0, text[:200]  # bounded: the alias bomb took minutes and GBs
    # both paths are exercised; how many variants load depends on the seeded draw over the config's keys
    assert outcomes["loaded"] >= 10 and outcomes["rejected"] >= 100, outcomes


@pytest.mark.parametrize("text, message", [
    ('mqtt:\n  host: a\nmqtt:\n  port: 1884\n', "fuzz.yaml:3: mqtt: given twice"),
    ('a: &a [1]\nmqtt:\n  host: *a\n', "anchors and aliases"),
    ('events:\n  end_hold_seconds: ' + "9" * 400 + '\n', "number too large"),
    ('state:\n  dir: "/tmp/a\\0b"\n', "contains a NUL character"),
    ('mqtt:\n  host: "\\ud800"\n', "not valid Unicode text"),
    ('homeassistant:\n  prefix: "home/#"\n', "homeassistant.prefix: 'home/#' is not a valid MQTT topic level"),
    ('mqtt:\n  host: ""\n', "mqtt.host: must not be empty"),
    ('mqtt:\n  device_id: ' + "d" * 70_000 + '\n', "mqtt.device_id: longer than 128 bytes"),
    ('mqtt:\n  password_file: /no/such/secret\n', "mqtt.password_file: /no/such/secret does not exist"),
    ('mqtt:\n  tls_ca_file: /etc/hostname\n', "holds no usable certificate"),
])
def test_settings_that_broke_at_run_time_are_rejected_when_loading(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text, "fuzz.yaml")


def test_three_rooms_on_one_broker_are_three_devices_with_nothing_crossed(broker, subscriber_factory, cry_then_quiet,
                                                                          tmp_path):
    """What ``crymonitor@<room>.service`` runs: one config per room without a device_id, the room name from the
    unit's CRYMONITOR_INSTANCE; a cry in one room is heard in that room's topics only."""
    sub = subscriber_factory(broker.port, "#")
    rooms = ("nursery", "kids", "guest")
    daemons = []
    for room in rooms:
        folder = tmp_path / room
        folder.mkdir()
        config = folder / f"{room}.yaml"
        config.write_text(f"mqtt:\n  port: {broker.port}\n  keepalive_seconds: 5\nstate:\n  dir: {folder / 'state'}\n"
                          "logging:\n  format: json\n")
        audio = cry_then_quiet if room == "kids" else quiet_file(folder / "q.wav", 60)
        daemons.append(DaemonProcess(config, "--input", str(audio), env={**os.environ, "CRYMONITOR_INSTANCE": room}))
    try:
        sub.wait_for(lambda m: any(t == "crymonitor/kids/event" and json.loads(p)["type"] == "cry_end"
                                   for t, p, _ in m), timeout=90)
    finally:
        codes = [daemon.stop(signal.SIGTERM)[0] for daemon in daemons]
    assert codes == [0, 0, 0]
    discovered = {t: json.loads(p) for t, p, _ in sub.messages if t.startswith("homeassistant/device/") and p}
    assert set(discovered) == {f"homeassistant/device/crymonitor_{room}/config" for room in rooms}
    unique_ids = [c["unique_id"] for config in discovered.values() for c in config["cmps"].values()]
    assert len(unique_ids) == len(set(unique_ids))
    events = {room: [json.loads(p)["type"] for t, p, _ in sub.messages if t == f"crymonitor/{room}/event"]
              for room in rooms}
    assert events["nursery"] == events["guest"] == [] and events["kids"][0] == "cry_start"
    assert all(not [r for r in d.logs() if r["event"] == "mqtt_disconnected"] for d in daemons)  # no id collision


def test_at_seconds_and_buffer_check_in_config():
    assert ClassifierConfig().at_seconds() == (2.0, 6.0)
    assert ClassifierConfig(refine_after_seconds=0.0).at_seconds() == (2.0,)
    with pytest.raises(ConfigError, match="half of audio.buffer_seconds"):
        parse_config("audio:\n  buffer_seconds: 10\nclassifier:\n  refine_after_seconds: 6\n")
