"""systemd notifications (monitor/service/notify.py): datagrams to a socket the test owns, silence without
systemd, and READY, STATUS, WATCHDOG and STOPPING from the real daemon."""

import os
import signal
import socket

from daemon_helpers import DaemonProcess, quiet_file, write_config
from monitor.service.notify import Notifier


def test_systemd_notify_ready_status_and_watchdog(broker, tmp_path):
    address = f"@crymonitor-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + address[1:])
        server.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}
        daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "sd"),
                               "--input", str(quiet_file(tmp_path / "q.wav", 60)), env=env)
        try:
            received = []
            while sum(m == "WATCHDOG=1" for m in received) < 3:
                received += server.recv(4096).decode().split("\n")
            assert received.index("READY=1") < received.index("WATCHDOG=1")
            assert any(m.startswith("STATUS=") for m in received)
        finally:
            code, _ = daemon.stop(signal.SIGTERM)
        assert code == 0
        assert "STOPPING=1" in server.recv(4096).decode()


def test_notifier_sends_datagrams_to_path_and_abstract_sockets(tmp_path, monkeypatch):
    for address in (str(tmp_path / "notify.sock"), f"@crymonitor-test-{os.getpid()}"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(address.replace("@", "\0", 1))
            server.settimeout(2)
            monkeypatch.setenv("NOTIFY_SOCKET", address)
            monkeypatch.setenv("WATCHDOG_USEC", "10000000")
            monkeypatch.delenv("WATCHDOG_PID", raising=False)
            notifier = Notifier()
            assert notifier.watchdog_interval == 5.0
            assert notifier.ready("listening")
            assert server.recv(1024) == b"READY=1\nSTATUS=listening"
            assert notifier.watchdog()
            assert server.recv(1024) == b"WATCHDOG=1"


def test_notifier_is_silent_without_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notifier = Notifier()
    assert not notifier.ready("x") and notifier.watchdog_interval is None
    assert not Notifier("/nonexistent/socket").watchdog()  # an unreachable socket never raises
