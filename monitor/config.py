"""Typed configuration loaded from YAML, validated strictly, with defaults that work with no file at all.

Each section is a frozen dataclass; a field's ``metadata`` carries its allowed range or choices. Loading
rejects unknown keys, wrong types and out-of-range values with a :class:`ConfigError` naming the key, the file
and the line (from the YAML node marks), e.g. ``crymonitor.yaml:12: events.end_threshold: must be in
[0.0, 1.0], got 1.5``. ``config/crymonitor.yaml`` documents every key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from monitor.core.control import SENSITIVITIES, CommandError, QuietHours  # noqa: F401  SENSITIVITIES: the schema's choices

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# The shipped models: a wheel carries the ONNX files the defaults need and the manifest inside the package (setup.py
# maps models/ to monitor/_models); a checkout (editable install, or PYTHONPATH at the checkout) has no such folder
# and uses its models/ in place, .pt files and all.
PACKAGED_MODELS = Path(__file__).resolve().parent / "_models"
MODELS_DIR = PACKAGED_MODELS if (PACKAGED_MODELS / "manifest.json").is_file() else PACKAGE_ROOT / "models"
PASSWORD_ENV = "CRYMONITOR_MQTT_PASSWORD"
MAX_NAME_BYTES = 128  # base topic, device id, discovery prefix, client id
INSTANCE_ENV = "CRYMONITOR_INSTANCE"  # set by systemd/crymonitor@.service to the instance (room) name
ADAPTATIONS = ("prior", "majority", "prototypes", "off")  # classifier.adaptation's learners (besides auto, true, false)


class ConfigError(Exception):
    """Invalid configuration; the message names the file, line and key."""


def _range(lo: float | None = None, hi: float | None = None) -> dict:
    return {"range": (lo, hi)}


def _choices(*values: str) -> dict:
    return {"choices": values}


@dataclass(frozen=True)
class AudioConfig:
    device: int | str | None = None  # None = the system default input
    sample_rate: int | None = field(default=None, metadata=_range(8000, 192000))  # None = try 16 kHz, else native
    channels: int | None = field(default=None, metadata=_range(1, 32))
    block_seconds: float = field(default=0.1, metadata=_range(0.01, 1.0))
    buffer_seconds: float = field(default=30.0, metadata=_range(10.0, 600.0))
    reopen_backoff_max_seconds: float = field(default=30.0, metadata=_range(1.0, 600.0))
    deaf_after_seconds: float = field(default=20.0, metadata=_range(1.0, 3600.0))


@dataclass(frozen=True)
class DetectorConfig:
    # model: the cry model named by ``model``; cnn10: that, under its name from when the only model was CNN10
    kind: str = field(default="model", metadata=_choices("model", "cnn10", "loudness"))
    # YAMNet fine-tuned on our cries without forgetting AudioSet, int8 in ONNX Runtime (no torch): on the nursery
    # validation its medium preset finds 166 of 206 cries with no false alarm in 7.9 hours, where the int8 CNN10
    # finds 123 with 18 (models/detector-yamnet-lwf.md)
    model: Path = field(default=MODELS_DIR / "detector-yamnet-lwf-int8.onnx", metadata={"role": "detector"})
    # None: the hop the model's presets were calibrated at (its manifest entry; N of M counts windows, so the two
    # travel together). Set: for the streaming CNN10, a multiple of 0.08 s (its cost does not depend on it); for
    # YAMNet a multiple of 0.01 s (its log-mel frames), one pass of its network per hop.
    hop_seconds: float | None = field(default=None, metadata=_range(0.05, 2.0))
    gate_dbfs: float = field(default=-65.0, metadata=_range(-120.0, 0.0))
    device: str = field(default="cpu", metadata=_choices("cpu", "cuda", "auto"))
    threads: int = field(default=1, metadata=_range(1, 64))
    loudness_dbfs: float = field(default=-35.0, metadata=_range(-100.0, 0.0))  # kind: loudness
    loudness_hold_seconds: float = field(default=1.0, metadata=_range(0.0, 60.0))  # kind: loudness
    # The parents' "not a cry" answers hold back detections that sound like a marked one (monitor.core.home_sounds).
    # auto: as the model's study decided (its manifest entry's not_a_cry.on_by_default); on: whenever the model has
    # studied rules; off: the answer is not offered and nothing is held back.
    not_a_cry: str = field(default="auto", metadata=_choices("auto", "on", "off"))


@dataclass(frozen=True)
class EventsConfig:
    # None: the detector model's own operating point for the sensitivity preset, which travels with the model in
    # models/manifest.json (calibrated by tools/sweep_operating_point.py). Set here, they replace the model's
    # "medium" preset (low and high stay the model's).
    start_threshold: float | None = field(default=None, metadata=_range(0.0, 1.0))
    confirm_windows: int | None = field(default=None, metadata=_range(1, 100))
    of_windows: int | None = field(default=None, metadata=_range(1, 100))
    end_threshold: float = field(default=0.4, metadata=_range(0.0, 1.0))
    end_hold_seconds: float = field(default=4.0, metadata=_range(0.25, 600.0))
    cooldown_seconds: float = field(default=5.0, metadata=_range(0.0, 3600.0))
    max_duration_seconds: float = field(default=600.0, metadata=_range(10.0, 86400.0))
    sensitivity: str = field(default="medium", metadata=_choices(*SENSITIVITIES))
    quiet_hours: str | None = None  # "HH:MM-HH:MM" local time: detection paused; None or "OFF" = never


@dataclass(frozen=True)
class BabyConfig:
    """What the parents may tell the reason models (monitor/core/baby.py); null: not told, which always works."""

    sex: str | None = field(default=None, metadata=_choices("m", "f"))
    # YYYY-MM-DD; the age band is derived on the day of each cry. A date after that day (a typo, or a clock that is
    # wrong after a power cut) counts as not told, with a warning: never a reason to stop the monitor
    birth_date: date | None = None


@dataclass(frozen=True)
class ClassifierConfig:
    """The cry-reason classifier (monitor/inference/classify.py): when it runs, on what audio, and when it says "uncertain"."""

    enabled: bool = True
    # classifier.pt exported, equal to 1e-7; no torch
    model: Path = field(default=MODELS_DIR / "classifier.onnx", metadata={"role": "classifier"})
    device: str = field(default="auto", metadata=_choices("cpu", "cuda", "auto"))
    first_after_seconds: float = field(default=2.0, metadata=_range(0.0, 60.0))
    refine_after_seconds: float = field(default=6.0, metadata=_range(0.0, 120.0))  # 0 = no second answer
    lookback_seconds: float = field(default=1.5, metadata=_range(0.0, 10.0))
    # 0.9: below it, grouped CV shows the confident reasons are less often right than assuming "hungry"
    # (models/classifier.md); the daemon then says "uncertain" and still publishes the probabilities
    min_confidence: float = field(default=0.9, metadata=_range(0.0, 1.0))
    baby: BabyConfig = BabyConfig()
    # Learning this baby from the parents' "Last cry was" answers (monitor/core/adaptation.py): prior (the answer
    # counts as a prior on the model), majority (the reason they gave most often, whatever the sound),
    # prototypes (the answers' embeddings mixed with the model) or off. Before any answer all are the model.
    # auto: as the model's card decided from its study on the raw Donate-a-cry uploads (models/manifest.json,
    # "adaptation"): for the shipped model, majority. On real babies' answers it agrees with the parents' next one far
    # more often than the model, and neither other learner clears it (its rule: the 95 % interval of the paired
    # difference above 0; the count prior measured -0.6 points, -2.9 to +1.6; models/classifier.md). true:
    # prototypes (what it meant when that was the only one), false: off (YAML reads on/off as true/false). The
    # answers are stored either way, so a change starts from all of them
    adaptation: bool | str = field(default="auto", metadata=_choices("auto", *ADAPTATIONS))
    feedback_window_hours: float = field(default=12.0, metadata=_range(0.0, 24.0 * 7))

    def at_seconds(self) -> tuple[float, ...]:
        first, refine = self.first_after_seconds, self.refine_after_seconds
        return (first, refine) if refine > first else (first,)


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = True
    host: str = "localhost"
    port: int = field(default=1883, metadata=_range(1, 65535))
    username: str | None = None
    password_file: Path | None = None  # else the CRYMONITOR_MQTT_PASSWORD environment variable
    tls: bool = False
    tls_ca_file: Path | None = None  # None with tls = the system CA store
    base_topic: str = "crymonitor"
    # a templated service (crymonitor@<room>) sets CRYMONITOR_INSTANCE: each room is its own device by default
    device_id: str = field(default_factory=lambda: os.environ.get(INSTANCE_ENV) or "nursery")
    client_id: str | None = None  # None = crymonitor-<device_id>
    keepalive_seconds: int = field(default=30, metadata=_range(5, 3600))
    level_interval_seconds: float = field(default=5.0, metadata=_range(0.5, 3600.0))
    diagnostics_interval_seconds: float = field(default=30.0, metadata=_range(1.0, 3600.0))
    # unreachable this long is a problem (logged, systemd status, diagnostics), shorter is a blip (broker restart)
    unreachable_problem_seconds: float = field(default=60.0, metadata=_range(1.0, 86400.0))
    accept_commands: bool = True

    @property
    def topic(self) -> str:
        """The device's topic root, ``<base_topic>/<device_id>``: every state, event and command is under it."""
        return f"{self.base_topic}/{self.device_id}"

    def password(self) -> str | None:
        """The broker password from ``password_file`` or the environment; never stored in the config object."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"mqtt.password_file: cannot read {self.password_file} ({exc.strerror})") from None
        return os.environ.get(PASSWORD_ENV)


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = True
    prefix: str = "homeassistant"
    name: str = "Nursery cry monitor"


@dataclass(frozen=True)
class StateConfig:
    dir: Path | None = None  # None = $STATE_DIRECTORY (set by systemd) or $XDG_STATE_HOME/crymonitor
    outbox_max_events: int = field(default=1000, metadata=_range(10, 1_000_000))
    stale_after_seconds: float = field(default=3600.0, metadata=_range(1.0, 30 * 86400.0))

    def path(self) -> Path:
        if self.dir is not None:
            return self.dir
        if os.environ.get("STATE_DIRECTORY"):
            return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "crymonitor"


@dataclass(frozen=True)
class ClipsConfig:
    enabled: bool = False
    # The *Last cry* picture (a spectrogram, monitor/service/picture.py) published to the broker at each cry_end.
    # On by default: it cannot be played back (96 bands of magnitude without phase, a column per 32 ms or more),
    # and it goes only to the broker that gets the level, scores and reasons already; a parent sees what the
    # monitor heard. false: nothing drawn from the audio but those numbers leaves the box (a picture published
    # before is deleted).
    picture: bool = True
    pre_roll_seconds: float = field(default=5.0, metadata=_range(0.0, 60.0))
    max_seconds: float = field(default=120.0, metadata=_range(1.0, 3600.0))
    retention_days: float = field(default=7.0, metadata=_range(0.01, 3650.0))
    max_total_mb: float = field(default=500.0, metadata=_range(1.0, 1_000_000.0))


@dataclass(frozen=True)
class LoggingConfig:
    level: str = field(default="info", metadata=_choices("debug", "info", "warning", "error"))
    format: str = field(default="auto", metadata=_choices("auto", "json", "console"))


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = AudioConfig()
    detector: DetectorConfig = DetectorConfig()
    events: EventsConfig = EventsConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    mqtt: MqttConfig = MqttConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    state: StateConfig = StateConfig()
    clips: ClipsConfig = ClipsConfig()
    logging: LoggingConfig = LoggingConfig()

    def __post_init__(self) -> None:
        e = self.events
        if e.confirm_windows is not None and e.of_windows is not None and e.confirm_windows > e.of_windows:
            raise ConfigError("events.confirm_windows must not exceed events.of_windows")
        if e.start_threshold is not None and e.end_threshold > e.start_threshold:
            raise ConfigError("events.end_threshold must not exceed events.start_threshold (hysteresis)")
        if self.events.quiet_hours is not None and self.events.quiet_hours.strip().upper() != "OFF":
            try:
                QuietHours.parse(self.events.quiet_hours)
            except CommandError as exc:
                raise ConfigError(f"events.quiet_hours: {exc}") from None
        if self.mqtt.tls_ca_file is not None and not self.mqtt.tls_ca_file.is_file():
            raise ConfigError(f"mqtt.tls_ca_file: {self.mqtt.tls_ca_file} does not exist")
        if self.events.end_hold_seconds < (self.detector.hop_seconds or 0.0):
            raise ConfigError("events.end_hold_seconds must be at least detector.hop_seconds")
        if max(self.classifier.at_seconds()) + self.classifier.lookback_seconds > self.audio.buffer_seconds / 2:
            raise ConfigError("classifier.refine_after_seconds + lookback_seconds must not exceed half of "
                              "audio.buffer_seconds (the cry's audio must still be in the buffer)")
        if self.clips.pre_roll_seconds > self.audio.buffer_seconds:
            raise ConfigError("clips.pre_roll_seconds must not exceed audio.buffer_seconds")
        for name, value in (("mqtt.base_topic", self.mqtt.base_topic), ("mqtt.device_id", self.mqtt.device_id),
                            ("homeassistant.prefix", self.homeassistant.prefix)):
            if not value or any(ch in value for ch in "#+") or value.startswith("/") or value.endswith("/"):
                raise ConfigError(f"{name}: {value!r} is not a valid MQTT topic level")
            if len(value.encode()) > MAX_NAME_BYTES:  # topics are built from them (MQTT allows 65,535 bytes)
                raise ConfigError(f"{name}: longer than {MAX_NAME_BYTES} bytes")
        for name, value in (("mqtt.base_topic", self.mqtt.base_topic),
                            ("homeassistant.prefix", self.homeassistant.prefix)):
            if value.startswith("$"):  # $SYS/...: the broker drops a client's publishes there without a word
                raise ConfigError(f"{name}: {value!r} starts with $, which MQTT keeps for the broker's own topics")
        if self.mqtt.client_id is not None and not 0 < len(self.mqtt.client_id.encode()) <= MAX_NAME_BYTES:
            raise ConfigError(f"mqtt.client_id: must be 1 to {MAX_NAME_BYTES} bytes")
        if not self.mqtt.host.strip():
            raise ConfigError("mqtt.host: must not be empty")
        if self.mqtt.password_file is not None and not self.mqtt.password_file.is_file():
            raise ConfigError(f"mqtt.password_file: {self.mqtt.password_file} does not exist")
        if self.mqtt.tls_ca_file is not None:
            import ssl

            try:
                ssl.create_default_context(cafile=str(self.mqtt.tls_ca_file))
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"mqtt.tls_ca_file: {self.mqtt.tls_ca_file} holds no usable certificate "
                                  f"({getattr(exc, 'reason', None) or exc})") from None


def _key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = f"{prefix}{key.value}"
            lines[name] = key.start_mark.line + 1
            lines.update(_key_lines(value, name + "."))
    return lines


def _shown(value: Any) -> str:
    """``value`` for an error message: an integer past 4,300 digits cannot even be printed (``str`` raises), and a
    long text would drown the line.

    >>> _shown(10**5000), _shown("x" * 200)[-5:], _shown(3)
    ('a number too large to show', 'xx...', '3')
    """
    if isinstance(value, int) and abs(value) >= 10**15:
        return "a number too large to show"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _convert(value: Any, hint: Any, meta: dict, where: str, base: Path) -> Any:
    """Check ``value`` against the field's type hint and metadata; return it converted (e.g. str → Path).

    Relative paths resolve against ``base``: the config file's folder, so a config works whatever the daemon's
    working directory (systemd starts it in ``/``)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{where}: must not be empty")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            converted = value
            break
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                converted = float(value)
            except OverflowError:
                raise ConfigError(f"{where}: number too large") from None
            break
        if option is date and isinstance(value, date) and not isinstance(value, datetime):
            return value  # YAML reads 2026-10-01 as a date
        if option is date and isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a date YYYY-MM-DD, got {value!r}") from None
        if isinstance(value, str) and option in (str, Path):
            if "\0" in value:
                raise ConfigError(f"{where}: contains a NUL character")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"{where}: not valid Unicode text (a lone surrogate?)") from None
        if option is str and isinstance(value, str):
            converted = value
            break
        if option is Path and isinstance(value, str):
            path = Path(value).expanduser()
            path = path if path.is_absolute() else (base / path).resolve()
            if "role" in meta:
                path = _shipped_if_missing(Path(value), path)
                _check_model_role(path, meta["role"], where)
            return path
    else:
        names = " or ".join("null" if o is type(None) else o.__name__ for o in options)
        raise ConfigError(f"{where}: expected {names}, got {type(value).__name__} {_shown(value)}")
    if isinstance(converted, float) and not math.isfinite(converted):
        raise ConfigError(f"{where}: must be a finite number, got {converted}")
    if "range" in meta and isinstance(converted, (int, float)):
        lo, hi = meta["range"]
        if (lo is not None and converted < lo) or (hi is not None and converted > hi):
            raise ConfigError(f"{where}: must be in [{lo}, {hi}], got {_shown(converted)}")
    if "choices" in meta and converted not in meta["choices"]:
        allowed = [*meta["choices"], *(("true or false (unquoted)",) if bool in options else ())]
        raise ConfigError(f"{where}: must be one of {', '.join(allowed)}, got {_shown(converted)}")
    return converted


def _shipped_if_missing(written: Path, resolved: Path) -> Path:
    """A model written as ``models/<file>`` or ``../models/<file>`` (as ``config/crymonitor.yaml`` has it) that is
    not there beside the config is the shipped model of that name: a config copied out of the checkout (to
    ``/etc/crymonitor``, or used with an installed wheel) keeps working. Anything else, or a name nothing ships,
    stays as written, and loading it says what is missing."""
    if written.is_absolute() or resolved.exists() or any(p != ".." for p in written.parent.parts[:-1]) \
            or written.parent.name != "models":
        return resolved
    shipped = MODELS_DIR / written.name
    return shipped if shipped.is_file() else resolved


def _check_model_role(path: Path, role: str, where: str) -> None:
    """A model listed in its manifest must be one of the kind the key wants: a detector where a reason classifier
    belongs passes every other check and fails only at start (its entry has no ``classes``). A file not listed
    is left to the model's own loading, whose errors say what to run."""
    from monitor.inference.weights import ModelFileError, read_manifest

    try:
        entry = read_manifest(path.parent).get(path.name)
    except ModelFileError:
        return
    if entry is not None and ("classes" in entry.kwargs) != (role == "classifier"):
        other = "a reason classifier" if role == "detector" else "a cry detector"
        raise ConfigError(f"{where}: {path.name} is {other} ({entry.arch}), not a {role} model")


def _build(cls: type, data: Any, path: str, lines: dict[str, int], source: str, base: Path) -> Any:
    def where(key: str) -> str:
        key = key.rstrip(".")
        line = lines.get(key)
        return f"{source}:{line}: {key}" if line else f"{source}: {key}"

    if not isinstance(data, dict):
        raise ConfigError(f"{where(path) if path else source}: expected a mapping of keys")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        full = f"{path}{key}"
        if key not in fields:
            raise ConfigError(f"{where(full)}: unknown key; known keys here: {', '.join(fields)}")
        if dataclasses.is_dataclass(hints[key]):
            values[key] = _build(hints[key], value if value is not None else {}, full + ".", lines, source, base)
        else:
            values[key] = _convert(value, hints[key], dict(fields[key].metadata), where(full), base)
    try:
        return cls(**values)
    except ConfigError as exc:  # a rule across keys, "<key>: …": at the line of that key where it is in the file
        key, _, rest = str(exc).partition(": ")
        raise ConfigError(f"{where(key)}: {rest}" if key in lines else f"{source}: {exc}") from None


MAX_DEPTH = 8  # the config is two levels deep; anything much deeper is a mistake or an attack


def _check_tree(node: yaml.Node, source: str) -> None:
    """Refuse what would make loading unbounded or silently wrong: anchors and aliases (ten levels of ten aliases
    expand to 10¹⁰ nodes; a self-reference never ends), nesting deeper than :data:`MAX_DEPTH`, and a key given twice
    in one mapping (the later one would silently win, e.g. a second ``mqtt:`` section resetting the host)."""
    seen: set[int] = set()
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        line = current.start_mark.line + 1
        if id(current) in seen:
            raise ConfigError(f"{source}:{line}: YAML anchors and aliases (& and *) are not supported here")
        seen.add(id(current))
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source}:{line}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(current, yaml.MappingNode):
            keys: set = set()
            for key, value in current.value:
                if not isinstance(key, yaml.ScalarNode):  # YAML's "? [a, b]": no config key is a list or mapping
                    raise ConfigError(f"{source}:{key.start_mark.line + 1}: a key must be a name, not a "
                                      f"{'list' if isinstance(key, yaml.SequenceNode) else 'mapping'}")
                if key.value in keys:
                    raise ConfigError(f"{source}:{key.start_mark.line + 1}: {key.value}: given twice in the same "
                                      "mapping (the later one would silently win)")
                keys.add(key.value)
                stack += [(key, depth + 1), (value, depth + 1)]
        elif isinstance(current, yaml.SequenceNode):
            stack += [(item, depth + 1) for item in current.value]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with the scalars it cannot build as YAML errors at their line rather than a bare
    ValueError: an impossible date (2026-02-30) and an integer of more than Python's 4,300 digits."""

    def _scalar(self, node: yaml.Node, build) -> Any:
        try:
            return build(self, node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(None, None, f"{node.value[:40]!r}: {str(exc).split(':')[0]}",
                                                    node.start_mark) from None

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:
        return self._scalar(node, yaml.SafeLoader.construct_yaml_timestamp)

    def construct_yaml_int(self, node: yaml.Node) -> Any:
        return self._scalar(node, yaml.SafeLoader.construct_yaml_int)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def parse_config(text: str, source: str = "<config>", base: Path | None = None) -> Config:
    try:
        node = yaml.compose(text, Loader=_Loader)  # nodes only: aliases are shared, not expanded
        if node is not None:
            _check_tree(node, source)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, whatever PyYAML says
        raise ConfigError(f"{source}{line}: invalid YAML ({problem})") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    return _build(Config, data or {}, "", _key_lines(node) if node else {}, source, base or Path.cwd())


MAX_CONFIG_BYTES = 256 * 1024  # 40 times the documented config; parsing more would take seconds of pure Python


def load_config(path: str | Path | None) -> Config:
    """Load ``path``, or the built-in defaults when ``path`` is None. Only a regular file of at most
    :data:`MAX_CONFIG_BYTES` is read: a FIFO would block the reader until something writes to it, and a huge file
    takes seconds to parse (a SIGHUP reload reads it while the daemon listens)."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO without it waits for a writer
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ConfigError(f"{path}: not a regular file (a folder, FIFO or device); give a config file")
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, str(path), path.resolve().parent)


def override(config: Config, section: str, **changes: Any) -> Config:
    """A copy of ``config`` with some keys of one section replaced (for CLI flags), validated the same way."""
    current = getattr(config, section)
    hints = typing.get_type_hints(type(current))
    fields = {f.name: f for f in dataclasses.fields(current)}
    checked = {k: _convert(v, hints[k], dict(fields[k].metadata), f"--{section}.{k}", Path.cwd())
               for k, v in changes.items() if v is not None}
    return dataclasses.replace(config, **{section: dataclasses.replace(current, **checked)})
