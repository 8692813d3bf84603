"""Home Assistant MQTT discovery: one retained device-based config on ``<prefix>/device/<device_id>/config``.

Built from the same topic layout the publisher uses, so the entities always point at live topics. HA requires
``dev`` with identifiers, and ``platform`` plus ``unique_id`` on every component; an empty retained payload on
the same topic deletes the device (``crymonitor ha-remove``). ``qos`` is set on every component: HA reads it
there, not at the device level (a real HA 2026.2 subscribed at QoS 0 when it was only at the top). Availability
is ``status`` with its two payloads spelled out: it says whether the daemon is there, so a deaf microphone
leaves every entity available and shows on *Microphone problem*.
"""

from __future__ import annotations

from monitor import __version__
from monitor.config import SENSITIVITIES
from monitor.core.control import QUIET_HOURS_PATTERN
from monitor.core.events import DONT_KNOW, PARENT_REASONS, UNCERTAIN
from monitor.service.publish import OFFLINE, ONLINE

FEEDBACK_CONTROL = "last_cry_reason"  # <topic>/set/last_cry_reason; the select's state is <topic>/last_cry_reason
NOT_A_CRY = "not a cry"  # the answer that marks a detection as one of the home's sounds (monitor.core.home_sounds)
FORGET_CONTROL = "forget_not_a_cry"  # <topic>/set/forget_not_a_cry: the button that clears those marks
HOME_SOUNDS = "not_a_cry"  # <topic>/not_a_cry: {"kept", "suppressed_today"}


def feedback_options(reasons: bool, not_a_cry: bool) -> tuple[str, ...]:
    """The "Last cry was" select's options: the reasons (a reason classifier runs), "not a cry" (the detector's
    marks are on), and "don't know"; empty when neither is on (no select)."""
    if not (reasons or not_a_cry):
        return ()
    return (*(PARENT_REASONS if reasons else ()), *((NOT_A_CRY,) if not_a_cry else ()), DONT_KNOW)

REASON_STATES = (*PARENT_REASONS, UNCERTAIN)  # the reason sensor's options: the adapted model may name any parent's
# reason; "uncertain" below classifier.min_confidence and before the first classification ("unknown" means "no data"
# to Home Assistant)
EVENT_TYPES = ("cry_start", "cry_end", "cry_reason")
PICTURE = "last_cry_picture"  # <topic>/last_cry_picture: the PNG of the *Last cry* image


def discovery_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/device/{_object_id(device_id)}/config"


def _object_id(device_id: str) -> str:
    return "crymonitor_" + "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in device_id)


def discovery_payload(topic: str, device_id: str, name: str, live: bool = True, controls: bool = True,
                      feedback: tuple[str, ...] = (), picture: bool = False) -> dict:
    """The device config for the daemon publishing under ``topic`` (``<base>/<device_id>``). ``live``: the
    daemon, which publishes its ``state`` (*Listening*) and counts the day's cries; not a replay, whose count is
    of that replay only (no ``total_increasing``: a count restarting at 0 at every replay would read as a meter
    reset). ``controls``: with the switch, selects and text that command it; ``feedback``: with the "Last cry
    was" select with these options (:func:`feedback_options`; with "not a cry", also the button that forgets
    those marks and the diagnostic sensors that count them); ``picture``: with the *Last cry* image."""
    uid = _object_id(device_id)

    def entity(platform: str, key: str, label: str, **options) -> dict:
        return {"p": platform, "unique_id": f"{uid}_{key}", "name": label, "qos": 1, **options}

    state = f"{topic}/state"
    config = {
        "dev": {"ids": [uid], "name": name, "mf": "crymonitor", "mdl": "CNN10 cry detector", "sw": __version__},
        "o": {"name": "crymonitor", "sw": __version__},
        "avty": [{"t": f"{topic}/status", "pl_avail": ONLINE, "pl_not_avail": OFFLINE}],
        "cmps": {
            "crying": entity("binary_sensor", "crying", "Crying", device_class="sound", state_topic=f"{topic}/crying"),
            # HA's event entity wants {"event_type": …}; the template maps our event JSON onto it
            "cry": entity("event", "cry", "Cry", state_topic=f"{topic}/event", event_types=list(EVENT_TYPES),
                          value_template="{{ dict(value_json, event_type=value_json.type) | to_json }}"),
            "reason": entity("sensor", "reason", "Cry reason", device_class="enum", options=list(REASON_STATES),
                             state_topic=f"{topic}/reason"),
            "level": entity("sensor", "level", "Sound level", device_class="sound_pressure", unit_of_measurement="dB",
                            state_class="measurement", entity_category="diagnostic", state_topic=f"{topic}/level"),
            # total_increasing: the midnight reset to 0 is a new cycle in HA's long-term statistics, not a drop
            "cries_today": entity("sensor", "cries_today", "Cries today" if live else "Cries in this replay",
                                  **({"state_class": "total_increasing"} if live else {}),
                                  icon="mdi:emoticon-cry-outline", state_topic=f"{topic}/stats",
                                  value_template="{{ value_json.cries_today }}"),
            "last_cry_duration": entity("sensor", "last_cry_duration", "Last cry duration", device_class="duration",
                                        unit_of_measurement="s", state_topic=f"{topic}/stats",
                                        value_template="{{ value_json.last_cry_duration_s }}"),
            "enabled": entity("switch", "enabled", "Monitoring enabled", command_topic=f"{topic}/set/enabled",
                              state_topic=state, value_template="{{ value_json.enabled }}"),
            "quiet_hours": entity("text", "quiet_hours", "Quiet hours", command_topic=f"{topic}/set/quiet_hours",
                                  state_topic=state, value_template="{{ value_json.quiet_hours }}",
                                  pattern=QUIET_HOURS_PATTERN, max=11, entity_category="config",
                                  icon="mdi:sleep"),
            # off while detection is paused for any reason: switched off, or inside the quiet hours
            "listening": entity("binary_sensor", "listening", "Listening", device_class="running",
                                state_topic=state, value_template="{{ value_json.monitoring }}"),
            "sensitivity": entity("select", "sensitivity", "Sensitivity", options=list(SENSITIVITIES),
                                  command_topic=f"{topic}/set/sensitivity", state_topic=state,
                                  value_template="{{ value_json.sensitivity }}", entity_category="config"),
            "problem": entity("binary_sensor", "problem", "Microphone problem", device_class="problem",
                              entity_category="diagnostic", state_topic=f"{topic}/diagnostics",
                              value_template="{{ 'ON' if value_json.problem else 'OFF' }}"),
            "inference_ms": entity("sensor", "inference_ms", "Inference time", unit_of_measurement="ms",
                                   state_class="measurement", entity_category="diagnostic",
                                   state_topic=f"{topic}/diagnostics", value_template="{{ value_json.inference_ms }}"),
        },
    }
    if feedback:  # state "None" until the parents answer for the latest cry: HA shows it as unknown
        config["cmps"]["last_cry_reason"] = entity(
            "select", "last_cry_reason", "Last cry was", options=list(feedback),
            command_topic=f"{topic}/set/{FEEDBACK_CONTROL}", state_topic=f"{topic}/{FEEDBACK_CONTROL}",
            icon="mdi:comment-question-outline")
    if NOT_A_CRY in feedback:
        config["cmps"] |= {
            "forget_not_a_cry": entity("button", FORGET_CONTROL, "Forget the home's not-a-cry sounds",
                                       command_topic=f"{topic}/set/{FORGET_CONTROL}", payload_press="PRESS",
                                       entity_category="config", icon="mdi:delete-sweep"),
            "not_a_cry_kept": entity("sensor", "not_a_cry_kept", "Not-a-cry sounds kept", state_class="measurement",
                                     entity_category="diagnostic", state_topic=f"{topic}/{HOME_SOUNDS}",
                                     value_template="{{ value_json.kept }}", icon="mdi:ear-hearing-off"),
            "suppressed_today": entity("sensor", "suppressed_today", "Detections suppressed today",
                                       state_class="total_increasing", entity_category="diagnostic",
                                       state_topic=f"{topic}/{HOME_SOUNDS}",
                                       value_template="{{ value_json.suppressed_today }}", icon="mdi:bell-off")}
    if picture:
        config["cmps"]["last_cry"] = entity("image", "last_cry", "Last cry", image_topic=f"{topic}/{PICTURE}",
                                            content_type="image/png")
    if not live:
        del config["cmps"]["listening"]
    if not controls:
        del config["cmps"]["enabled"], config["cmps"]["sensitivity"], config["cmps"]["quiet_hours"]
    return config
