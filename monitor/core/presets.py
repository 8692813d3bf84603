"""A detector's sensitivity presets and how the events settings combine with them. Pure: the schema's types in,
the state machine's resolved settings out.

A detector model carries its calibrated operating points (``low``, ``medium``, ``high``) in its manifest entry
(:class:`monitor.inference.weights.ModelEntry`); :func:`effective_events` makes the settings the state machine runs
with for the sensitivity chosen (config, or over MQTT). The rule that the end threshold never exceeds the start
threshold (hysteresis) is :func:`with_point`, the one place it is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.config import ConfigError, DetectorConfig, EventsConfig

LOUDNESS_HOP_SECONDS = 0.25  # detector.kind: loudness, unless detector.hop_seconds is set


@dataclass(frozen=True)
class OperatingPoint:
    """When a cry starts: ``confirm_windows`` of the last ``of_windows`` scores ≥ ``start_threshold``."""

    start_threshold: float
    confirm_windows: int
    of_windows: int


def with_point(events: EventsConfig, point: OperatingPoint, **changes) -> EventsConfig:
    """``events`` starting at ``point``; the end threshold is lowered to the start threshold if it is above it
    (an end threshold above the start would end a cry on the very scores that started it). End hold and cool-down
    stay.

    Example:
        >>> with_point(EventsConfig(end_threshold=0.6), OperatingPoint(0.5, 2, 3)).end_threshold
        0.5
    """
    return dataclasses.replace(events, **dataclasses.asdict(point),
                               end_threshold=min(events.end_threshold, point.start_threshold), **changes)


def effective_events(events: EventsConfig, sensitivity: str, detector: DetectorConfig | None = None,
                     presets: Mapping[str, OperatingPoint] | None = None) -> EventsConfig:
    """The state machine's settings for a sensitivity preset: every field resolved.

    ``presets`` are the model's calibrated operating points (``low``, ``medium``, ``high``; see
    :class:`monitor.inference.weights.ModelEntry`). The events section's own ``start_threshold`` / ``confirm_windows`` /
    ``of_windows``, where set, replace the model's ``medium`` (with the first three set, no
    model preset is needed); the end threshold follows :func:`with_point`. In loudness mode the scores are 0/1, so a start needs every
    window over ``loudness_hold_seconds`` to be loud and the presets do not apply (the level itself is the
    setting).

    Example:
        >>> model = {"medium": OperatingPoint(0.9, 2, 3), "high": OperatingPoint(0.7, 2, 2)}
        >>> effective_events(EventsConfig(), "high", presets=model).start_threshold
        0.7
        >>> effective_events(EventsConfig(confirm_windows=3), "medium", presets=model).confirm_windows
        3
    """
    if detector is not None and detector.kind == "loudness":
        windows = max(1, round(detector.loudness_hold_seconds / (detector.hop_seconds or LOUDNESS_HOP_SECONDS)))
        return dataclasses.replace(events, start_threshold=0.5, end_threshold=0.5, confirm_windows=windows,
                                   of_windows=windows, sensitivity=sensitivity)
    point = (presets or {}).get(sensitivity)
    if sensitivity == "medium":
        own = {f.name: getattr(events, f.name) for f in dataclasses.fields(OperatingPoint)
               if getattr(events, f.name) is not None}
        if point is not None:
            point = dataclasses.replace(point, **own)
        elif {"start_threshold", "confirm_windows", "of_windows"} <= own.keys():
            point = OperatingPoint(**own)
    if point is None:
        raise ConfigError(f"the detector model has no calibrated operating point for sensitivity {sensitivity!r} "
                          "(its entry in models/manifest.json lacks 'operating_point'; run "
                          "tools/sweep_operating_point.py)")
    if point.confirm_windows > point.of_windows:
        raise ConfigError("events.confirm_windows must not exceed events.of_windows")
    return with_point(events, point, sensitivity=sensitivity)

