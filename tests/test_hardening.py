"""Issue 12: what a user or a fault did that used to break the daemon, each reproduced with real parts."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import soundfile as sf
import structlog
import yaml

from conftest import ROOT, cry_then_long_quiet, fill
from daemon_helpers import DaemonProcess, quiet_file, write_config
from monitor.audio.files import AudioFileError, read_file
from monitor.config import Config, ConfigError, override, parse_config
from monitor.service.daemon import Daemon


def quiet_wav(folder: Path) -> Path:
    return quiet_file(folder / "quiet.wav", 60.0)


def test_an_infinite_number_in_the_state_file_sets_it_aside_with_a_warning(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text('{"stats": {"day": "2026-12-02", "cries_today": 1e999}}')
    config = override(override(Config(), "mqtt", enabled=False), "state", dir=str(state))
    with structlog.testing.capture_logs() as logs:
        daemon = Daemon(config)
    assert daemon.state.stats.cries_today == 0
    assert any(r["event"] == "state_file_corrupt" and "out of range" in r["error"] for r in logs)


def catches_sighup(pid: int) -> bool:
    """Whether the process has a handler for SIGHUP (bit 0 of SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & 1 << (signal.SIGHUP - 1))
    return False


def test_a_sighup_while_the_models_load_is_a_reload_not_a_death(broker, tmp_path):
    config = write_config(tmp_path / "c.yaml", broker.port, "hup")
    daemon = DaemonProcess(config, "--input", str(quiet_wav(tmp_path)))
    deadline = time.monotonic() + 10
    while not catches_sighup(daemon.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.005)  # until the interpreter is up (a sleep of 0.3 s was too short on a loaded machine)
    assert not any(r["event"] == "daemon_started" for r in daemon.logs())  # the models are not loaded yet
    daemon.proc.send_signal(signal.SIGHUP)
    try:
        daemon.wait_log("reload_requested_while_starting")
        daemon.wait_log("config_reloaded")
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.stderr


@pytest.mark.parametrize("kind, message", [("folder", "is a folder"), ("device", "not a regular file")])
def test_a_folder_or_a_device_is_named_as_such_not_as_missing(tmp_path, kind, message):
    path = tmp_path if kind == "folder" else Path("/dev/zero")
    with pytest.raises(AudioFileError, match=message):
        read_file(path)


def test_nan_and_infinite_samples_become_silence_with_a_warning_and_valid_json(tmp_path, cry_clip):
    audio = read_file(cry_clip)[: 4 * 16000].copy()
    audio[1000:1100], audio[5000] = np.nan, np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, audio, 16000, subtype="FLOAT")
    out = subprocess.run([sys.executable, "-m", "monitor", "classify", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the output"))
    assert 0.0 <= answer["confidence"] <= 1.0
    assert "audio_not_finite" in out.stderr


def test_a_truncated_flac_ends_the_open_cry_before_its_error(tmp_path, cry_then_quiet):
    audio, rate = sf.read(cry_then_quiet, dtype="float32")
    flac = tmp_path / "cut.flac"
    sf.write(flac, audio, rate)
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) * 2 // 3])  # the cry holds most of the bytes: this cuts into it
    out = subprocess.run([sys.executable, "-m", "monitor", "replay", str(flac)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["type"] for e in events if e["type"] != "cry_reason"] == ["cry_start", "cry_end"], out.stdout
    assert events[-1]["ended_by"] == "input_error"
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("crymonitor: error:") and "cut.flac: decoding failed part-way" in out.stderr


def mqtt_config(path: Path, mqtt: str) -> Path:
    path.write_text(f"mqtt:\n{mqtt}  keepalive_seconds: 5\nstate:\n  dir: {path.parent / 'state'}\n"
                    "logging:\n  format: json\n")
    return path


@pytest.mark.parametrize("case, mqtt, reason", [
    ("refused", "  port: {free}\n", "connection refused: nothing listens on localhost:{free}"),
    ("dns", "  host: no-such-broker.invalid\n", "cannot resolve the host name 'no-such-broker.invalid'"),
    ("tls-on-plain", "  port: {broker}\n  tls: true\n", "TLS handshake failed"),
])
def test_every_failed_connection_is_logged_with_its_reason(broker, tmp_path, case, mqtt, reason):
    from conftest import free_port

    free = free_port()
    config = mqtt_config(tmp_path / "c.yaml", mqtt.format(free=free, broker=broker.port))
    daemon = DaemonProcess(config, "--input", str(quiet_wav(tmp_path)))
    try:
        record = daemon.wait_log("mqtt_connect_failed", timeout=30)
    finally:
        daemon.stop(signal.SIGTERM)
    assert reason.format(free=free) in record["reason"], record


def test_reconnects_within_seconds_of_the_brokers_return_and_reports_the_outage(broker, subscriber_factory,
                                                                              tmp_path):
    config = mqtt_config(tmp_path / "c.yaml", f"  port: {broker.port}\n  device_id: back\n"
                         "  unreachable_problem_seconds: 10\n  diagnostics_interval_seconds: 1\n")
    daemon = DaemonProcess(config, "--input", str(quiet_wav(tmp_path)))
    try:
        daemon.wait_log("mqtt_connected")
        broker.stop()
        time.sleep(25)  # long enough for paho's default backoff to have grown past 10 s
        broker.start()
        back = time.monotonic()
        deadline = back + 10
        while sum(r["event"] == "mqtt_connected" for r in daemon.logs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        waited = time.monotonic() - back
        sub = subscriber_factory(broker.port, "crymonitor/back/diagnostics")
        sub.wait_for(lambda m: any(json.loads(p)["last_broker_outage_s"] for p in sub.payloads("diagnostics")))
    finally:
        daemon.stop(signal.SIGTERM)
    assert waited < 5, f"reconnected {waited:.1f} s after the broker returned"  # it used to take 11–16 s
    assert any(r["event"] == "mqtt_connect_failed" for r in daemon.logs())  # the outage was not silent
    problem = next(r for r in daemon.logs() if r["event"] == "mqtt_unreachable")  # longer than 10 s: a problem
    assert problem["level"] == "error" and problem["seconds"] >= 10
    diagnostics = json.loads(sub.payloads("diagnostics")[-1])
    assert 25 <= diagnostics["last_broker_outage_s"] < 40 and diagnostics["broker_problem"] is False


def test_a_second_daemon_on_the_same_state_folder_is_refused_naming_the_first(broker, tmp_path):
    config = write_config(tmp_path / "c.yaml", broker.port, "twice")
    first = DaemonProcess(config, "--input", str(quiet_wav(tmp_path)))
    try:
        first.wait_log("daemon_started")
        second = DaemonProcess(config, "--input", str(quiet_wav(tmp_path)))
        assert second.proc.wait(timeout=60) == 2
        second.stop(signal.SIGTERM)
        assert f"already used by the crymonitor with PID {first.proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr and first.proc.poll() is None
    finally:
        first.stop(signal.SIGKILL)
    third = DaemonProcess(config, "--input", str(quiet_wav(tmp_path)))  # a killed daemon leaves no stale lock
    try:
        third.wait_log("daemon_started")
    finally:
        third.stop(signal.SIGTERM)


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


def test_a_gsm_wav_replays_and_the_files_after_it_too(tmp_path, cry_then_quiet):
    noise = np.random.default_rng(0).standard_normal(8000 * 5).astype(np.float32) * 0.1
    gsm = tmp_path / "phone.wav"
    sf.write(gsm, noise, 8000, subtype="GSM610", format="WAV")  # libsndfile calls it non-seekable
    out = subprocess.run([sys.executable, "-m", "monitor", "replay", str(gsm), str(cry_then_quiet)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["file"] for line in out.stdout.splitlines()][-1] == str(cry_then_quiet)


def test_classify_on_a_long_file_stays_in_bounded_memory(tmp_path, cry_clip):
    cry = read_file(cry_clip)
    noise = np.random.default_rng(1).standard_normal(20 * 60 * 16000).astype(np.float32) * 3e-3
    noise[600 * 16000 : 600 * 16000 + cry.size] += cry  # 20 minutes with one cry in the middle
    path = tmp_path / "night.wav"
    sf.write(path, noise, 16000, subtype="PCM_16")
    code = ("import sys; from monitor.cli import main; main(['classify', sys.argv[1]]); "
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    answer = json.loads(out.stdout)
    assert answer["path"] == str(path) and 0 <= answer["confidence"] <= 1
    peak_mb = int(out.stderr.split()[-1]) / 1024
    assert peak_mb < 500, f"{peak_mb:.0f} MB"  # the whole file's log-mel and spectrum took about 1 GB here


def audio_variants(folder: Path, count: int, seed: int = 5):
    """Seeded odd and broken files: rates from 1 Hz to 2³¹−1, 1–8 channels, every container and sample format
    libsndfile writes here, NaN and clipped samples, one sample, cut at a random byte, bytes flipped, garbage."""
    rng = np.random.default_rng(seed)
    formats = [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"),
               ("WAV", "GSM610"), ("AIFF", "PCM_24")]
    rates = [1000, 8000, 11025, 11127, 16000, 22051, 44100, 48000, 96000, 192000, 384000]
    for i in range(count):
        container, subtype = formats[i % len(formats)]
        rate = int(rates[rng.integers(len(rates))]) if subtype != "GSM610" else 8000
        channels = 1 if subtype == "GSM610" else int(rng.integers(1, 9))
        frames = int(rng.choice([1, 100, rate // 2, 2 * rate]))
        audio = (rng.standard_normal((frames, channels)) * rng.choice([1e-4, 0.1, 3.0])).astype(np.float32)
        if subtype == "FLOAT" and rng.random() < 0.5:
            audio[rng.integers(frames)] = rng.choice([np.nan, np.inf, -np.inf])
        path = folder / f"{i}.{container.lower()}"
        try:
            sf.write(path, np.clip(audio, -1, 1) if subtype != "FLOAT" else audio, rate, subtype=subtype,
                     format=container)
        except (sf.LibsndfileError, ValueError, RuntimeError):  # a combination this libsndfile cannot write
            path.write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
        damage = i % 5
        data = bytearray(path.read_bytes())
        if damage == 1:
            path.write_bytes(bytes(data[: int(rng.integers(0, len(data) + 1))]))
        elif damage == 2 and len(data) > 64:
            for at in rng.integers(0, len(data), 8):
                data[at] ^= 0xFF
            path.write_bytes(bytes(data))
        elif damage == 3 and container == "WAV" and len(data) > 28:  # a header claiming an absurd rate
            data[24:28] = int(rng.choice([1, 1_000_003, 2**31 - 1])).to_bytes(4, "little")
            path.write_bytes(bytes(data))
        yield path


@pytest.mark.slow  # seconds of real work: the full suite, not the fast lane
def test_audio_fuzz_every_file_replays_or_is_one_clear_error(tmp_path):
    from monitor.inference.detect import make_detector
    from monitor.offline.replay import Collector, replay_file

    config = Config()
    detector = make_detector(config.detector)
    outcomes = {"replayed": 0, "rejected": 0}
    for path in audio_variants(tmp_path, 210):
        started = time.monotonic()
        try:
            collector = Collector()
            replay_file(str(path), config, detector, [collector])
            assert all(np.isfinite(s.score) and np.isfinite(s.level_dbfs) for s in collector.windows)
            json.dumps(collector.events, allow_nan=False)
            outcomes["replayed"] += 1
        except AudioFileError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc), str(exc)
            outcomes["rejected"] += 1
        assert time.monotonic() - started < 10, path  # 44,101 Hz used to take 12 GB and a traceback
    assert outcomes["replayed"] > 50 and outcomes["rejected"] > 30, outcomes


# --- the outbox on a full or read-only disk: real tmpfs mounts where the machine allows them -------------------


def earlier_events(state: Path, device: str) -> list[str]:
    """Events an earlier run left in the outbox (its broker was down when it stopped)."""
    from monitor.service.outbox import Outbox

    box = Outbox(state / "outbox.sqlite")
    ids = [f"earlier-{n}" for n in range(3)]
    for n, cry_id in enumerate(ids):
        box.add(f"crymonitor/{device}/event", {"type": "cry_start" if n % 2 == 0 else "cry_end", "id": cry_id,
                                               "t": float(n)})
    box.close()
    return ids


def published_ids(sub) -> list[str]:
    return [json.loads(p)["id"] for p in sub.payloads("event")]


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_full_or_read_only_disk_keeps_the_outbox_monitors_and_sends_its_events_once_writable(
        broker, subscriber_factory, small_disk, cry_then_quiet, tmp_path, fault):
    state = small_disk / "state"
    state.mkdir()
    kept = earlier_events(state, "disk")
    before = (state / "outbox.sqlite").read_bytes()
    if fault == "full":
        filler = fill(small_disk)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    config = tmp_path / "c.yaml"
    config.write_text(f"mqtt:\n  port: {broker.port}\n  device_id: disk\nstate:\n  dir: {state}\n"
                      "logging:\n  format: json\n")
    sub = subscriber_factory(broker.port, "crymonitor/disk/event")
    daemon = DaemonProcess(config, "--input", str(cry_then_long_quiet(tmp_path, cry_then_quiet)))
    try:
        problem = daemon.wait_log("outbox_unavailable")
        daemon.wait_log("cry_start", timeout=60)  # the alarm goes out without the outbox
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_start" for p in sub.payloads("event")))
        assert not set(kept) & set(published_ids(sub))  # not readable yet, and not lost: the file is kept
        assert (state / "outbox.sqlite").read_bytes() == before and not list(state.glob("*.corrupt-*"))
        if fault == "full":
            filler.unlink()  # space freed
        else:
            subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        daemon.wait_log("outbox_available", timeout=15)
        sub.wait_for(lambda m: set(kept) <= set(published_ids(sub)), timeout=15)
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0 and problem["level"] == "error"
    assert "outbox_write_failed" in {r["event"] for r in daemon.logs()}  # each event without it is logged


def test_a_malformed_outbox_is_set_aside_and_the_events_it_still_holds_are_salvaged(tmp_path):
    from monitor.service.outbox import Outbox

    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    for n in range(40):  # about ten 4 KiB pages of rows
        box.add("t", {"id": str(n), "pad": "x" * 900})
    box.close()
    data = bytearray(path.read_bytes())
    last_page = len(data) // 4096 - 1
    data[last_page * 4096: last_page * 4096 + 100] = b"\xff" * 100  # a torn write in the last leaf page
    path.write_bytes(bytes(data))
    with structlog.testing.capture_logs() as logs:
        box = Outbox(path)
    salvaged = [json.loads(p)["id"] for _, _, p in box.pending(now=None)]
    assert 0 < len(salvaged) < 40 and salvaged == [str(n) for n in range(len(salvaged))]  # in order
    set_aside = [p.name for p in tmp_path.glob("outbox.sqlite.corrupt-*") if re.fullmatch(r".*-\d+", p.name)]
    assert len(set_aside) == 1  # with its WAL, if it had one: the rows of the last write may be there
    assert [r for r in logs if r["event"] == "outbox_corrupt"][0]["salvaged"] == len(salvaged)


# --- issue 24: the state folder's files in every shape a fault or a hand could leave -----------------------------

NASTY_JSON = ["NaN", "Infinity", "-Infinity", "1e999", "-1", "-1e-300", "9" * 400, "-" + "9" * 400, "0.5", "true",
              "null", '""', '"x"', '"2026-02-30"', "[]", "{}", "[1, [2]]", "[" * 1000 + "]" * 1000,
              '{"a": ' * 1000 + "1" + "}" * 1000, '"\\ud800"', "[0.1, 0.2, 0.3]"]
VALID_STATE = {"controls": {"enabled": "ON", "sensitivity": "high", "quiet_hours": "OFF"},
               "from_config": {"sensitivity": "medium", "quiet_hours": "OFF"},
               "stats": {"day": "2026-01-01", "cries_today": 2, "last_cry_duration_s": 4.5},
               "open_cry": {"id": "c", "started_ts": "2026-01-01T00:00:00+00:00"}}
VALID_LABELS = {"labels": [{"id": "a", "reason": "tired", "embedding": [0.5, 0.1], "model": "m", "at": 1.0},
                           {"id": "b", "reason": "hungry", "embedding": [0.2, 0.3], "model": "m", "at": 2.0}]}
VALID_RECENT = {"recent": [{"id": "a", "ended_at": 5.0, "embedding": [0.5, 0.1], "model": "m"}]}


def leaves(value, path=()):
    """Every place in a JSON document where a value can be replaced, the document itself included."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))


def with_raw(document, path: tuple, raw: str) -> str:
    """The document as JSON text, with the raw JSON ``raw`` (which may not even parse) at ``path``."""
    if not path:
        return raw
    marker = "\u0000MARK\u0000"
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = marker
    return json.dumps(copy).replace(json.dumps(marker), raw)


def json_variants(document, count: int, rng):
    """Seeded damage to a valid document: one value replaced by a nasty one; a cut; a stray byte."""
    places = list(leaves(document))
    for i in range(count):
        text = with_raw(document, places[rng.integers(len(places))], NASTY_JSON[rng.integers(len(NASTY_JSON))])
        if i % 7 == 5:
            text = text[: int(rng.integers(len(text) + 1))]
        elif i % 7 == 6 and text:
            at = int(rng.integers(len(text)))
            text = text[:at] + chr(int(rng.integers(0, 256))) + text[at + 1:]
        yield text


def outbox_variants(folder: Path, count: int, rng):
    """Seeded outbox files: the right table or another one, rows with every kind of payload and time."""
    import sqlite3

    schemas = ["CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
               "payload TEXT NOT NULL, created REAL NOT NULL)",
               "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, topic TEXT, payload TEXT, created REAL)",
               "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, topic TEXT, payload BLOB, created TEXT, extra TEXT)",
               "CREATE TABLE outbox (id INTEGER PRIMARY KEY, data BLOB)"]
    payloads = [json.dumps({"type": "cry_start", "id": "ok", "t": 1.0}), *NASTY_JSON, "not json", b"\xff\xfe"]
    times = [1.0, 1e12, -5.0, "yesterday", "1.0", None, float("inf"), float("nan"), 2**62]
    for i in range(count):
        path = folder / f"{i}" / "outbox.sqlite"
        path.parent.mkdir()
        db = sqlite3.connect(path)
        schema = schemas[i % len(schemas)]
        db.execute(schema)
        for _ in range(int(rng.integers(0, 6))):
            row = ("crymonitor/x/event", payloads[rng.integers(len(payloads))], times[rng.integers(len(times))])
            try:
                if "data BLOB" in schema:
                    db.execute("INSERT INTO outbox (data) VALUES (?)", (row[1],))
                else:
                    db.execute("INSERT INTO outbox (topic, payload, created) VALUES (?, ?, ?)", row)
            except sqlite3.IntegrityError:  # NOT NULL
                pass
        db.commit()
        db.close()
        yield path


@pytest.fixture(scope="module")
def shipped_classifier():
    from monitor.config import ClassifierConfig
    from monitor.inference.classify import ReasonClassifier

    return ReasonClassifier(ClassifierConfig(device="cpu", adaptation=True))


def test_state_file_fuzz_every_shape_loads_or_is_set_aside(tmp_path, shipped_classifier):
    from monitor.service.feedback import Feedback
    from monitor.service.outbox import Outbox
    from monitor.service.running import RunningConfig
    from monitor.service.state import DaemonState

    rng = np.random.default_rng(24)
    outcomes = {"kept": 0, "set aside": 0}
    cases = [("state.json", text) for text in json_variants(VALID_STATE, 150, rng)]
    cases += [("feedback.json", text) for text in json_variants(VALID_LABELS, 150, rng)]
    cases += [("recent_cries.json", text) for text in json_variants(VALID_RECENT, 100, rng)]
    for n, (name, text) in enumerate(cases):
        folder = tmp_path / f"j{n}"
        folder.mkdir()
        (folder / name).write_text(text, errors="surrogatepass")
        with structlog.testing.capture_logs() as logs:
            state = DaemonState(folder, RunningConfig(Config()))
            feedback = Feedback(folder, shipped_classifier, 12)
        stats = json.loads(json.dumps(state.stats.to_payload(), allow_nan=False))
        duration = stats["last_cry_duration_s"]
        assert stats["cries_today"] >= 0 and (duration is None or duration >= 0), (name, text[:200])
        json.dumps({"labels": feedback.labels, "recent": feedback.recent}, allow_nan=False)
        set_aside = list(folder.glob(f"{name}.corrupt-*"))
        warned = [r for r in logs if r["event"] in ("state_file_corrupt", "feedback_store_corrupt")]
        assert len(set_aside) == len(warned) <= 1, (name, text[:200])  # a bad file is never silently used
        outcomes["set aside" if set_aside else "kept"] += 1
    for path in outbox_variants(tmp_path, 80, rng):
        box = Outbox(path)
        for _, _, payload in box.pending(now=time.time()):
            assert isinstance(json.loads(payload, parse_constant=pytest.fail), dict)  # only events go out
        box.close()
    assert outcomes["kept"] >= 30 and outcomes["set aside"] >= 200, outcomes


def test_instance_fuzz_a_daemon_meets_no_twin_in_garbage(broker, subscriber_factory, tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/inst/instance")
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "inst"),
                           "--input", str(quiet_file(tmp_path / "q.wav", 60)))
    try:
        sub.wait_for(lambda m: sub.payloads("instance"), timeout=60)
        mine = sub.payloads("instance")[-1]
        me = json.loads(mine)
        rng = np.random.default_rng(24)
        later = [{"host": "h", "state_dir": f"/s{n}", "pid": 1, "started": value} for n, value in
                 enumerate([me["started"] + 1, 1e999, "soon", None, [], 10**400, float("nan"), True])]
        fuzz = [rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes() for _ in range(40)]
        fuzz += [raw.encode() for raw in NASTY_JSON] + [json.dumps(who).encode() for who in later]
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="instance-fuzzer")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        for payload in fuzz:
            client.publish("crymonitor/inst/instance", payload, qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        sub.wait_for(lambda m: sub.payloads("instance")[-1] == mine)  # it says again that the device is its
        assert daemon.proc.poll() is None  # none of it started before this daemon: no twin to give way to
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0 and "device_id_in_use" not in {r["event"] for r in daemon.logs()}
