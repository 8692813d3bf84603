"""Issue 12 (hardening): the daemon against a real mosquitto with a TLS listener whose certificate comes from a CA
made here, and each way such a connection fails (trust, host name, credentials) logged with its reason."""

import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Broker, need
from daemon_helpers import DaemonProcess, quiet_file

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
