"""Sensitivity presets (monitor/core/presets.py): the operating point travels with the model in its manifest,
and the config's own keys override only the medium preset."""

import dataclasses
import json
import shutil

import pytest

from conftest import ROOT
from monitor.config import Config, ConfigError, DetectorConfig, EventsConfig, override
from monitor.core.pipeline import Pipeline
from monitor.core.presets import OperatingPoint, effective_events
from monitor.inference.detect import CryDetector
from monitor.inference.weights import read_manifest


def test_the_operating_point_comes_from_the_model_manifest(tmp_path, detector):
    calibrated = read_manifest(ROOT / "models")[Config().detector.model.name]
    shipped = calibrated.operating_point
    assert Pipeline(Config(), detector).hop == round(calibrated.hop_seconds * 16000)  # N of M counts windows of this hop
    for sensitivity, point in shipped.items():
        config = override(Config(), "events", sensitivity=sensitivity)
        used = Pipeline(config, detector).events.config
        assert (used.start_threshold, used.confirm_windows, used.of_windows) == dataclasses.astuple(point)
    # another model (here: the same weights listed with other presets) brings its own operating point
    shutil.copyfile(ROOT / "models" / "detector.pt", tmp_path / "detector.pt")
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    entry = manifest["detector.pt"]
    entry["operating_point"]["medium"] = {"start_threshold": 0.55, "confirm_windows": 3, "of_windows": 7}
    entry["hop_seconds"] = 0.16
    (tmp_path / "manifest.json").write_text(json.dumps({"detector.pt": entry}))
    other = CryDetector(dataclasses.replace(Config().detector, model=tmp_path / "detector.pt"))
    used = Pipeline(Config(), other).events.config
    assert (used.start_threshold, used.confirm_windows, used.of_windows) == (0.55, 3, 7)
    assert Pipeline(Config(), other).hop == 0.16 * 16000
    assert Pipeline(override(Config(), "detector", hop_seconds=0.4), other).hop == 0.4 * 16000  # the config wins
    assert other.presets["medium"] == OperatingPoint(0.55, 3, 7)
    # the config's own keys, where set, override only the medium preset
    mine = override(Config(), "events", start_threshold=0.9)
    assert Pipeline(mine, other).events.config.start_threshold == 0.9
    assert Pipeline(override(mine, "events", sensitivity="high"), other).events.config.start_threshold == (
        entry["operating_point"]["high"]["start_threshold"])


def test_sensitivity_presets_come_from_the_model_and_the_config_overrides_only_medium():
    model = {"low": OperatingPoint(0.97, 4, 5), "medium": OperatingPoint(0.9, 2, 3), "high": OperatingPoint(0.7, 2, 2)}
    events = EventsConfig(end_threshold=0.75)
    for name, point in model.items():
        preset = effective_events(events, name, presets=model)
        assert (preset.start_threshold, preset.confirm_windows, preset.of_windows) == dataclasses.astuple(point)
        assert preset.end_threshold == min(0.75, point.start_threshold) and preset.sensitivity == name
        assert preset.end_hold_seconds == events.end_hold_seconds
    own = EventsConfig(start_threshold=0.8, of_windows=4)
    assert (effective_events(own, "medium", presets=model).start_threshold,
            effective_events(own, "medium", presets=model).confirm_windows,
            effective_events(own, "medium", presets=model).of_windows) == (0.8, 2, 4)
    assert effective_events(own, "high", presets=model).start_threshold == 0.7
    loud = effective_events(events, "high", DetectorConfig(kind="loudness", loudness_hold_seconds=1.0))
    assert (loud.confirm_windows, loud.of_windows, loud.start_threshold) == (4, 4, 0.5)  # presets do not apply
    with pytest.raises(ConfigError, match="no calibrated operating point"):
        effective_events(events, "medium", presets={})


def test_shipped_detector_carries_all_three_presets():
    presets = read_manifest(ROOT / "models")["detector.pt"].operating_point
    assert set(presets) == {"low", "medium", "high"}
    for point in presets.values():
        assert 0 < point.start_threshold < 1 and 1 <= point.confirm_windows <= point.of_windows
