"""MQTT publishing (monitor/service/publish.py) against a real mosquitto on loopback: retained states before
``online``, events across broker outages, the last will, and every failed connection (refused, unresolvable,
silent, TLS trust, host name, credentials) logged with its reason."""

import json
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import Broker, need
from daemon_helpers import DaemonProcess, event, quiet_file, quiet_wav, write_config
from monitor.config import MqttConfig
from monitor.service.homeassistant import EVENT_TYPES
from monitor.service.publish import MqttPublisher


def test_status_events_and_retained_state(broker, subscriber_factory):
    sub = subscriber_factory(broker.port)
    publisher = MqttPublisher(MqttConfig(port=broker.port, device_id="room1"))
    publisher.start()
    assert publisher.connected.wait(5)
    publisher.publish_event(event(0))
    publisher.set_state("crying", "ON")
    sub.wait_for(lambda m: any(t == "crymonitor/room1/crying" and p == "ON" for t, p, _ in m))
    assert sub.payloads("status")[0] == "online"
    assert json.loads(sub.payloads("event")[0]) == event(0)
    assert publisher.close() == 0
    sub.wait_for(lambda m: ("crymonitor/room1/status", "offline", False) in m)

    late = subscriber_factory(broker.port, client_id="late")  # a new subscriber sees the retained state
    msgs = late.wait_for(lambda m: len(m) >= 2)
    retained = {t: p for t, p, r in msgs if r}
    assert retained == {"crymonitor/room1/status": "offline", "crymonitor/room1/crying": "ON"}


def test_events_published_while_broker_is_down_arrive_after_it_returns(broker, subscriber_factory):
    sub = subscriber_factory(broker.port)
    publisher = MqttPublisher(MqttConfig(port=broker.port))
    publisher.start()
    assert publisher.connected.wait(5)
    publisher.publish_event(event(0))
    sub.wait_for(lambda m: len([1 for t, _, _ in m if t.endswith("/event")]) == 1)
    broker.stop()
    time.sleep(0.3)
    for n in range(1, 8):
        publisher.publish_event(event(n))
    time.sleep(0.5)
    broker.start()
    msgs = sub.wait_for(lambda m: {json.loads(p)["t"] for t, p, _ in m if t.endswith("/event")} >= set(range(8)),
                        timeout=20)
    ts = [json.loads(p)["t"] for t, p, _ in msgs if t.endswith("/event")]
    first_seen = sorted(set(ts), key=ts.index)
    assert first_seen == [float(n) for n in range(8)]  # all delivered, in order (duplicates allowed by QoS 1)
    assert publisher.close(timeout=5) == 0


def test_broker_down_at_start_does_not_block_and_delivers_later(broker, subscriber_factory):
    sub = subscriber_factory(broker.port)
    time.sleep(0.2)
    broker.stop()
    publisher = MqttPublisher(MqttConfig(port=broker.port))
    started = time.monotonic()
    publisher.start()
    publisher.publish_event(event(0))
    assert time.monotonic() - started < 0.5
    assert not publisher.connected.is_set()
    broker.start()
    sub.wait_for(lambda m: any(t.endswith("/event") for t, _, _ in m), timeout=20)
    publisher.close()


def test_unacknowledged_events_are_reported_not_silently_dropped(broker):
    broker.stop()
    publisher = MqttPublisher(MqttConfig(port=broker.port))
    publisher.start()
    publisher.publish_event(event(0))
    assert publisher.close(timeout=0.2) == 2  # the event and "offline" never reached a broker


def test_retained_states_are_acknowledged_before_online_at_every_connect(broker, subscriber_factory):
    """Issue 23: ``online`` first made Home Assistant show a state left by a dead run (Crying still ON after a
    kill -9) until the fresh one arrived, and an automation rang the parents again. The states go first, on the
    first connect and on the reconnect after a broker restart."""
    sub = subscriber_factory(broker.port)
    publisher = MqttPublisher(MqttConfig(port=broker.port, device_id="order"))
    states = {f"crymonitor/order/state{n}" for n in range(20)}
    for topic in sorted(states):
        publisher.set_retained(topic, "x" * 1000)
    publisher.start()
    sub.wait_for(lambda m: "online" in sub.payloads("status"))
    time.sleep(1.2)  # the broker autosaves the subscriber's session every second
    broker.stop()
    broker.start()
    sub.wait_for(lambda m: [p for t, p, r in m if t.endswith("/status") and not r].count("online") == 2, timeout=20)
    assert publisher.close(timeout=5) == 0
    live = [(t, p) for t, p, retained in sub.messages if not retained]  # what was published, in order
    onlines = [n for n, message in enumerate(live) if message == ("crymonitor/order/status", "online")]
    for previous, online in zip([-1, *onlines], onlines):
        assert {t for t, _ in live[previous + 1 : online]} >= states


def test_sigkill_leaves_offline_through_the_last_will(broker, subscriber_factory, cry_then_quiet, tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/file3/#")
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "file3"), "--input", str(cry_then_quiet))
    try:
        sub.wait_for(lambda m: "online" in sub.payloads("status"), timeout=60)
    finally:
        daemon.stop(signal.SIGKILL)
    msgs = sub.wait_for(lambda m: "offline" in sub.payloads("status"), timeout=15)
    assert ("crymonitor/file3/status", "offline", False) in msgs  # delivered live; it is also retained


def test_broker_restart_mid_cry_loses_no_event(broker, subscriber_factory, cry_then_quiet, tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/brk/#")
    # 40 s more of a quiet room, so the daemon is still running when it reconnects after the outage
    audio, rate = sf.read(cry_then_quiet, dtype="float32")
    longer = tmp_path / "cry_then_long_quiet.wav"
    sf.write(longer, np.concatenate([audio, np.resize(audio[-rate:], 40 * rate)]), rate)
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "brk"), "--input", str(longer))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_start" for p in sub.payloads("event")), timeout=60)
        time.sleep(1.2)  # the broker autosaves the subscriber's session every second
        broker.proc.kill()
        broker.proc.wait()
        daemon.wait_log("cry_end", timeout=30)  # the cry ends while the broker is down
        broker.start()
        # paho's reconnect backoff reaches its 30 s cap after a long outage (issue 12, item 10)
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_end" for p in sub.payloads("event")), timeout=60)
    finally:
        daemon.stop(signal.SIGTERM)
    # (type, id, t): a cry's two reasons share type and id
    logged = [(r["event"], r["id"], r["t"]) for r in daemon.logs() if r["event"] in EVENT_TYPES]
    received = [(e["type"], e["id"], e["t"]) for e in map(json.loads, sub.payloads("event"))]
    assert logged and set(logged) <= set(received)
    assert sorted(set(received), key=received.index) == logged  # first deliveries in order


@pytest.mark.slow  # seconds of real work: the full suite, not the fast lane
def test_a_broker_that_accepts_tcp_but_never_answers_is_logged_with_a_reason_promptly(tmp_path):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does) and never says a word
    port = silent.getsockname()[1]
    config = write_config(tmp_path / "c.yaml", port, "mute")  # keepalive_seconds: 5
    audio = quiet_file(tmp_path / "q.wav", 60)
    launched = datetime.now(timezone.utc)
    daemon = DaemonProcess(config, "--input", str(audio))
    try:
        first = daemon.wait_log("mqtt_connect_failed", timeout=20)  # the start's own question to the broker
        started = daemon.wait_log("daemon_started")
        deadline = time.monotonic() + 15
        while sum(r["event"] == "mqtt_connect_failed" for r in daemon.logs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        daemon.stop(signal.SIGTERM)
        silent.close()
    failures = [r for r in daemon.logs() if r["event"] == "mqtt_connect_failed"]
    assert [r["reason"].split(" within ")[0] for r in failures] == [f"no MQTT answer (CONNACK) from localhost:{port}"] * 2
    assert "3 s" in failures[0]["reason"] and "5 s" in failures[1]["reason"]  # the probe's wait, then a keepalive
    assert (datetime.fromisoformat(first["timestamp"]) - launched).total_seconds() < 10  # not the minute it took
    assert datetime.fromisoformat(first["timestamp"]) < datetime.fromisoformat(started["timestamp"])


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


PASSWORD = "right horse battery staple"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A throw-away CA and two server certificates it signed: one for localhost (the daemon's default host; the
    address too, for the test's subscriber on 127.0.0.1) and one for another host name. EC keys: fast to make."""
    openssl, folder = need("openssl"), tmp_path_factory.mktemp("certs")

    def run(*args) -> None:
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True, cwd=folder)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=crymonitor test CA")
    for name, san in (("localhost", "DNS:localhost,IP:127.0.0.1"), ("elsewhere", "DNS:elsewhere.example")):
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return folder


@pytest.fixture
def tls_broker(tmp_path, certs):
    """Starts a mosquitto whose only listener speaks TLS with the certificate ``name``; ``extra`` adds options."""
    started: list[Broker] = []

    def start(name: str = "localhost", extra: str = "") -> Broker:
        workdir = tmp_path / f"broker-{len(started)}"
        workdir.mkdir()
        started.append(Broker(workdir, f"cafile {certs / 'ca.crt'}\ncertfile {certs / name}.crt\n"
                                       f"keyfile {certs / name}.key\n{extra}"))
        started[-1].start()
        return started[-1]

    yield start
    for broker in started:
        broker.stop(graceful=False)


def run_daemon(folder: Path, port: int, device: str, mqtt: str = "") -> DaemonProcess:
    """The real daemon on a quiet file, with ``tls: true`` and the further mqtt keys in ``mqtt`` (write_config
    cannot add keys to its mqtt section)."""
    wav = quiet_file(folder / "quiet.wav", 60.0)
    config = folder / "c.yaml"
    config.write_text(f"mqtt:\n  port: {port}\n  device_id: {device}\n  keepalive_seconds: 5\n  tls: true\n{mqtt}"
                      f"state:\n  dir: {folder / 'state'}\nlogging:\n  format: json\n")
    return DaemonProcess(config, "--input", str(wav))


def first_log(daemon: DaemonProcess, event: str) -> dict:
    try:
        return daemon.wait_log(event, timeout=15)
    finally:
        daemon.stop(signal.SIGTERM)


def test_a_tls_broker_with_our_own_ca_is_trusted_through_tls_ca_file(certs, tls_broker, subscriber_factory,
                                                                      tmp_path):
    broker = tls_broker()
    sub = subscriber_factory(broker.port, "crymonitor/tls-ok/#", ca_file=certs / "ca.crt")
    daemon = run_daemon(tmp_path, broker.port, "tls-ok", f"  tls_ca_file: {certs / 'ca.crt'}\n")
    try:
        sub.wait_for(lambda m: "online" in sub.payloads("status"), timeout=15)  # seen through TLS with our CA
    finally:
        daemon.stop(signal.SIGTERM)
    assert not [r for r in daemon.logs() if r["event"] == "mqtt_connect_failed"], daemon.stderr


def test_without_tls_ca_file_a_self_made_ca_is_logged_as_not_trusted(tls_broker, tmp_path):
    """The system CA store does not know our CA: the fix is mqtt.tls_ca_file, and the log says so."""
    broker = tls_broker()
    record = first_log(run_daemon(tmp_path, broker.port, "tls-untrusted"), "mqtt_connect_failed")
    assert "TLS: the broker's certificate is not trusted (self-signed certificate in certificate chain)" in \
        record["reason"], record
    assert "set mqtt.tls_ca_file" in record["reason"], record


def test_a_certificate_for_another_host_name_is_logged_as_a_host_name_mismatch(certs, tls_broker, tmp_path):
    """A trusted certificate for the wrong name: setting tls_ca_file (the hint for an unknown CA) cannot help."""
    broker = tls_broker("elsewhere")
    record = first_log(run_daemon(tmp_path, broker.port, "tls-elsewhere", f"  tls_ca_file: {certs / 'ca.crt'}\n"),
                       "mqtt_connect_failed")
    assert "TLS: the broker's certificate is not valid for the host name 'localhost'" in record["reason"], record
    assert "not trusted" not in record["reason"] and "tls_ca_file" not in record["reason"], record


@pytest.fixture
def password_broker(tls_broker, tmp_path):
    """A TLS broker that admits only the user "baby-monitor" with :data:`PASSWORD`."""
    users = tmp_path / "users"
    subprocess.run([need("mosquitto_passwd"), "-b", "-c", str(users), "baby-monitor", PASSWORD], check=True)
    return tls_broker(extra=f"allow_anonymous false\npassword_file {users}\n")


@pytest.mark.parametrize("password, event, reason", [
    (PASSWORD, "mqtt_connected", None),
    ("not-the-password-7f3a", "mqtt_connect_refused", "the broker refused the credentials of user 'baby-monitor'"),
    (None, "mqtt_connect_refused", "the broker admits no anonymous clients (set mqtt.username"),
], ids=["right", "wrong", "anonymous"])
def test_a_password_protected_broker_admits_the_right_password_and_a_refusal_names_the_credentials(
        certs, password_broker, tmp_path, password, event, reason):
    """The right password connects, so a refusal is about the credentials; the log says which to fix."""
    mqtt = f"  tls_ca_file: {certs / 'ca.crt'}\n"
    if password is not None:
        (tmp_path / "password").write_text(password + "\n")
        mqtt += f"  username: baby-monitor\n  password_file: {tmp_path / 'password'}\n"
    daemon = run_daemon(tmp_path, password_broker.port, "tls-auth", mqtt)
    try:
        record = daemon.wait_log(event, timeout=15)
        if reason is not None:
            time.sleep(5)  # paho tries again every 1–2 s: those refusals are counted, not each logged
    finally:
        daemon.stop(signal.SIGTERM)
    if reason is not None:
        assert reason in record["reason"], record
        noise = [r["event"] for r in daemon.logs() if r["event"] in (event, "mqtt_disconnected")]
        assert noise == [event], noise  # it used to log a refusal and a disconnect every 1–2 s
    assert password is None or password not in daemon.stderr  # the password is never logged


# --- without a broker: the fast lane's share of this module ------------------------------------------------------

def test_a_failed_connection_is_explained_in_words(tmp_path):
    """:func:`connection_problem` and :func:`no_connack` say why, step by step: nothing listening, a listener that
    is no MQTT broker, a TLS handshake a plain listener cannot do."""
    from conftest import free_port
    from monitor.service.publish import connection_problem, no_connack

    port = free_port()
    assert connection_problem(MqttConfig(port=port)) == f"connection refused: nothing listens on localhost:{port}"
    with socket.create_server(("127.0.0.1", 0)) as plain:  # accepts TCP, then hangs up: no broker, no TLS
        port = plain.getsockname()[1]
        closer = threading.Thread(target=lambda: [plain.accept()[0].close() for _ in range(2)], daemon=True)
        closer.start()
        assert connection_problem(MqttConfig(port=port)).startswith("the broker closed the connection (it accepts TCP")
        tls = connection_problem(MqttConfig(port=port, tls=True))
        closer.join(5)
    assert tls.startswith("TLS handshake failed (") and tls.endswith(f"is localhost:{port} a TLS listener?"), tls
    assert no_connack(MqttConfig(port=port), 5.0).startswith(f"no MQTT answer (CONNACK) from localhost:{port} within 5 s")


def test_with_no_broker_at_all_an_event_waits_in_the_outbox_and_close_waits_for_nothing(tmp_path):
    from conftest import free_port
    from monitor.service.outbox import Outbox

    box = Outbox(tmp_path / "outbox.sqlite")
    publisher = MqttPublisher(MqttConfig(port=free_port(), device_id="alone"), outbox=box)
    publisher.publish_event(event(0))
    publisher.set_state("crying", "ON")  # remembered for a connect, not counted as unacknowledged
    diagnostics = publisher.diagnostics()
    assert (diagnostics["outbox_pending"], diagnostics["broker_problem"]) == (1, False)
    assert not publisher.connected.is_set()
    started = time.monotonic()
    assert publisher.close(timeout=5.0) == 2  # the event and "offline": reported, not waited for
    assert time.monotonic() - started < 1.0 and len(box) == 1  # the event stays for the next start
