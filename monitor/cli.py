"""Command line: ``crymonitor run | replay | classify | evaluate | check-config | devices | ha-remove``
(also ``python -m monitor``).

Known failures (bad config, unreadable audio, missing or tampered model, no audio system) print one line
``crymonitor: error: …`` and exit with status 2; they never end in a traceback.
"""

from __future__ import annotations

import signal
import sys


def _remember_reload(signum, frame) -> None:
    EARLY_RELOADS.append(signum)


# SIGHUP's default action kills the process: one sent while the daemon starts (systemctl reload, a log rotator) is
# remembered instead, and the running daemon reloads once (Daemon.run). Installed here, before the imports below
# (numpy, the audio library, asyncio: about 0.1 s), so only the interpreter's own start (~0.02 s) is unprotected.
EARLY_RELOADS: list[int] = []
if sys.argv[1:2] == ["run"]:  # the daemon only: a SIGHUP still ends a replay whose terminal closed
    signal.signal(signal.SIGHUP, _remember_reload)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from monitor import __version__  # noqa: E402
from monitor.audio.capture import CaptureError  # noqa: E402
from monitor.audio.files import AudioFileError  # noqa: E402
from monitor.config import Config, ConfigError, load_config, override  # noqa: E402
from monitor.inference.weights import ModelFileError  # noqa: E402
from monitor.logs import configure_logging  # noqa: E402

EXPECTED_ERRORS = (ConfigError, AudioFileError, ModelFileError, CaptureError)


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if getattr(args, "device", None) is not None:
        device = int(args.device) if args.device.isdigit() else args.device
        config = override(config, "audio", device=device)
    if getattr(args, "mqtt_host", None) or getattr(args, "mqtt_port", None):
        config = override(config, "mqtt", host=args.mqtt_host, port=args.mqtt_port)
    if getattr(args, "log_format", None):
        config = override(config, "logging", format=args.log_format)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGHUP, _remember_reload)  # already, unless main() was called with its own arguments
    from monitor.service.daemon import Daemon

    config = _config(args)
    configure_logging(config.logging)
    daemon = Daemon(config, input_path=args.input, config_path=args.config)
    code = asyncio.run(daemon.run(EARLY_RELOADS))
    # Everything is closed by now (capture, outbox, MQTT). Interpreter teardown with torch loaded takes ~0.8 s
    # on a 2-core box, which would break the promise to exit within 2 s of SIGTERM under load: skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_replay(args: argparse.Namespace) -> int:
    from monitor.core.stats import CryStats
    from monitor.inference.classify import make_classifier
    from monitor.inference.detect import make_detector
    from monitor.offline.replay import JsonLines, ScoresCsv, replay_file
    from monitor.service.picture import CryPictureSink

    config = _config(args)
    configure_logging(config.logging)
    detector = make_detector(config.detector)
    classifier = make_classifier(config)
    mqtt, roll_call = replay_device(config, reasons=classifier is not None) if args.publish else (None, None)
    published, stats = ([mqtt], CryStats()) if mqtt else ([], None)  # the device's cries, counted over the files
    if mqtt and config.clips.picture:
        published.append(CryPictureSink(config.classifier.lookback_seconds, mqtt.last_cry_picture))
    events_out = sys.stdout if args.events_out == "-" else open(args.events_out, "w")
    scores_out = open(args.scores_out, "w") if args.scores_out else None
    if scores_out:
        scores_out.write("t,score,level_dbfs\n")
    failed = 0
    try:
        for path in args.files:
            sinks = [JsonLines(events_out, path), *published, *([ScoresCsv(scores_out)] if scores_out else [])]
            try:
                replay_file(path, config, detector, sinks, classifier, realtime=args.realtime, stats=stats)
            except AudioFileError as exc:  # report it and go on with the other files
                print(f"crymonitor: error: {exc}", file=sys.stderr)
                failed += 1
    finally:
        if events_out is not sys.stdout:
            events_out.close()
        if scores_out:
            scores_out.close()
        unacked = mqtt.disconnect(timeout=10.0, offline=roll_call.last_one()) if mqtt else 0
    return 2 if failed else (1 if unacked else 0)


def replay_device(config, reasons: bool):
    """``replay --publish``: the whole protocol (discovery, availability, states, events) as a device of its own,
    ``<device_id>-replay`` with its own client id, never as the live nursery (docs/mqtt.md, "Replaying recordings
    as a device of their own"). Returns once Home Assistant can have subscribed to it (:meth:`MqttSink.wait_until_discovered`),
    with the roll call that keeps concurrent runs from marking each other's device offline."""
    from monitor.service.homeassistant import discovery_topic
    from monitor.service.mqtt_sink import MqttSink, ReplayRollCall, replay_identity
    from monitor.service.publish import MqttPublisher, RetainedProbe
    from monitor.service.running import RunningConfig

    config = replay_identity(config)
    ha = config.homeassistant
    probe = RetainedProbe(discovery_topic(ha.prefix, config.mqtt.device_id)) if ha.enabled else None
    roll_call = ReplayRollCall(config.mqtt.topic)

    def on_message(topic: str, payload: bytes, retained: bool) -> None:
        roll_call.on_message(topic, payload, retained)
        if probe:
            probe.on_message(topic, payload, retained)

    roll_call.publisher = MqttPublisher(config.mqtt, on_message=on_message,
                                        subscriptions=(*roll_call.subscriptions, *((probe.topic,) if probe else ())))
    mqtt = MqttSink(RunningConfig(config), roll_call.publisher, live=False, reasons=reasons)
    mqtt.start()
    if probe:
        mqtt.wait_until_discovered(probe)
    return mqtt, roll_call


def cmd_classify(args: argparse.Namespace) -> int:
    """One JSON line per file: the reason for the cry in it (the whole file is one cry; its loudest 30 s count)."""
    from monitor.audio.files import loudest_span
    from monitor.inference.classify import ReasonClassifier

    config = _config(args)
    configure_logging(config.logging)
    classifier = ReasonClassifier(config.classifier)
    failed = 0
    for path in args.files:
        try:  # a bad file is reported and the others still classified
            result = classifier.classify(loudest_span(path))
        except AudioFileError as exc:  # its message names the file
            print(f"crymonitor: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        except ValueError as exc:  # too short to classify
            print(f"crymonitor: error: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps({"path": path, "reason": result.reason, "confidence": round(result.confidence, 4),
                          "probs": {k: round(v, 4) for k, v in result.probs.items()}}), flush=True)
    return 2 if failed else 0


def cmd_check_config(args: argparse.Namespace) -> int:
    path = args.path or args.config
    config = load_config(path)
    print(f"{path or '(built-in defaults)'}: OK")
    print(json.dumps(_public(config), indent=2, default=str))
    return 0


def _public(config: Config) -> dict:
    """The config as a dict; it holds no password (that stays in its file or the environment)."""
    import dataclasses

    return dataclasses.asdict(config)


def cmd_ha_remove(args: argparse.Namespace) -> int:
    """Delete the device and its replay twin from Home Assistant: an empty retained discovery config for each,
    and a line for each saying whether Home Assistant had it (the broker's retained copy, read first)."""
    from monitor.service.homeassistant import discovery_topic
    from monitor.service.mqtt_sink import replay_identity
    from monitor.service.publish import RetainedProbe, make_client

    config = _config(args)
    client = make_client(config.mqtt, f"crymonitor-{config.mqtt.device_id}-remove")
    try:
        client.connect(config.mqtt.host, config.mqtt.port)
    except OSError as exc:
        raise ConfigError(f"cannot reach the broker at {config.mqtt.host}:{config.mqtt.port} ({exc})") from None
    devices = [(c.mqtt.device_id, RetainedProbe(discovery_topic(c.homeassistant.prefix, c.mqtt.device_id)))
               for c in (config, replay_identity(config))]

    def on_message(client, userdata, message) -> None:
        for _, probe in devices:
            probe.on_message(message.topic, message.payload, bool(message.retain))

    client.on_message = on_message
    client.loop_start()
    for _, probe in devices:  # subscribed first: the probe needs its retained copy before the echo
        client.subscribe(probe.topic, qos=1)
        client.publish(probe.topic, b"", qos=1, retain=True)
    answered = all(probe.echoed.wait(10) for _, probe in devices)
    client.disconnect()
    client.loop_stop()
    if not answered:
        raise ConfigError(f"the broker at {config.mqtt.host}:{config.mqtt.port} did not answer within 10 s")
    for device_id, probe in devices:
        if probe.before is None:
            print(f"no device {device_id} to remove ({probe.topic} was empty)")
        else:
            print(f"removed device {device_id} ({probe.topic})")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from monitor.audio.capture import list_input_devices

    devices = list_input_devices()
    if not devices:
        print("no audio input devices found")
        return 1
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark} {d.index:3d}  {d.name}  ({d.channels} ch, {d.default_rate:.0f} Hz)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crymonitor", description="On-device baby cry monitor.")
    parser.add_argument("--version", action="version", version=f"crymonitor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")
        p.set_defaults(handler=handler)
        return p

    run = add("run", cmd_run, "Run the daemon on the microphone (or on a file paced in real time).")
    run.add_argument("--input", metavar="FILE", help="use FILE, paced in real time, instead of a microphone")
    run.add_argument("--device", help="capture device name or index (overrides audio.device)")
    run.add_argument("--mqtt-host", help="broker host (overrides mqtt.host)")
    run.add_argument("--mqtt-port", type=int, help="broker port (overrides mqtt.port)")
    run.add_argument("--log-format", choices=("auto", "json", "console"))

    replay = add("replay", cmd_replay, "Run recorded files through the daemon's pipeline.")
    replay.add_argument("files", nargs="+", metavar="FILE")
    replay.add_argument("--events-out", default="-", metavar="PATH", help="JSON lines of events ('-' = stdout)")
    replay.add_argument("--scores-out", metavar="CSV", help="write t,score,level_dbfs per window")
    replay.add_argument("--realtime", action="store_true", help="pace input like a live microphone")
    replay.add_argument("--publish", action="store_true", help="also publish events to the configured broker")
    replay.add_argument("--mqtt-host")
    replay.add_argument("--mqtt-port", type=int)
    replay.add_argument("--log-format", choices=("auto", "json", "console"))

    classify = add("classify", cmd_classify, "Print the likely reason for the cry in each file (one JSON line each).")
    classify.add_argument("files", nargs="+", metavar="FILE")

    check = add("check-config", cmd_check_config, "Validate a config file and print the effective settings.")
    check.add_argument("path", nargs="?", type=Path)

    add("devices", cmd_devices, "List audio capture devices.")

    # listed here for --help; main() hands its arguments to monitor.offline.evaluate_cli, which has its own parser
    sub.add_parser("evaluate", add_help=False, help="Score annotated recordings: event and window metrics, timelines "
                   "(crymonitor evaluate --help).")

    remove = add("ha-remove", cmd_ha_remove, "Delete this device from Home Assistant (empty retained discovery).")
    remove.add_argument("--mqtt-host")
    remove.add_argument("--mqtt-port", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["evaluate"]:
        from monitor.offline.evaluate_cli import main as evaluate

        return evaluate(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except EXPECTED_ERRORS as exc:
        print(f"crymonitor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
