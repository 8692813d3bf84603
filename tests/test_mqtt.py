"""MQTT publishing against a real mosquitto on loopback."""

import json
import time

from monitor.config import MqttConfig
from monitor.service.publish import MqttPublisher


def event(n: int) -> dict:
    return {"type": "cry_start" if n % 2 == 0 else "cry_end", "t": float(n), "id": f"cry{n // 2}", "confidence": 0.9}


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


def test_outbox_rows_live_until_puback_and_are_resent_by_the_next_publisher(broker, subscriber_factory, tmp_path):
    from monitor.service.outbox import Outbox

    sub = subscriber_factory(broker.port)
    box = Outbox(tmp_path / "outbox.sqlite")
    publisher = MqttPublisher(MqttConfig(port=broker.port), outbox=box)
    publisher.start()
    assert publisher.connected.wait(5)
    publisher.publish_event(event(0))
    sub.wait_for(lambda m: len(sub.payloads("event")) == 1)
    deadline = time.monotonic() + 5
    while len(box) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(box) == 0  # acknowledged → deleted
    broker.stop()
    publisher.publish_event(event(1))
    publisher.publish_event(event(2))
    assert publisher.close(timeout=0.2) == 3 and len(box) == 2  # two events and "offline" never acknowledged

    broker.start()
    again = MqttPublisher(MqttConfig(port=broker.port), outbox=Outbox(tmp_path / "outbox.sqlite"))
    again.start()
    sub.wait_for(lambda m: [json.loads(p)["t"] for p in sub.payloads("event")][-2:] == [1.0, 2.0], timeout=20)
    assert again.close(timeout=5) == 0 and len(again.outbox) == 0


def test_a_corrupt_outbox_is_set_aside_not_fatal(tmp_path):
    from monitor.service.outbox import Outbox

    path = tmp_path / "outbox.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    box = Outbox(path)
    box.add("t", {"id": "x"})
    assert len(box) == 1 and len(list(tmp_path.glob("outbox.sqlite.corrupt-*"))) == 1


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
