"""The parents' answers (monitor/service/feedback.py) with the real shipped classifier, and through the real daemon
and a real broker."""

import json
import signal
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from structlog.testing import capture_logs

from conftest import cry_then_long_quiet, fill, pick
from daemon_helpers import DaemonProcess, write_config
from monitor.audio.files import read_file
from monitor.config import ClassifierConfig
from monitor.core.adaptation import AnswerPrior, BabyAdaptation, BabyMajority
from monitor.core.events import DONT_KNOW, CryEvent
from monitor.core.home_sounds import Hold, HoldRules
from monitor.driver import Emitted
from monitor.inference.classify import ReasonClassifier
from monitor.inference.weights import MODELS_DIR, read_manifest
from monitor.service.feedback import (FEEDBACK_FILE, FLOOD_LIMIT, HOME_FILE, HOME_SOUND_DAYS, MAX_HOME_SOUNDS,
                                      RECENT_FILE, Feedback)
from monitor.service.homeassistant import NOT_A_CRY

HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def cries(val_clips):
    return [read_file(c.path) for c in pick(val_clips, "donateacry-cleaned", "cry")[:3]]


@pytest.fixture
def classifier():
    return ReasonClassifier(ClassifierConfig(device="cpu", adaptation=True))


def started(cry_id: str) -> Emitted:
    return Emitted(CryEvent("cry_start", 1.0, cry_id, 0.95), 0.0)


def ended(cry_id: str) -> Emitted:
    return Emitted(CryEvent("cry_end", 9.0, cry_id, 0.99, duration_s=8.0, ended_by="quiet"), 0.0)


def hear(feedback: Feedback, classifier: ReasonClassifier, audio: np.ndarray, cry_id: str, classify: bool = True):
    """One cry as the driver reports it to its sinks: start, the reason's embedding, end."""
    feedback.cry_event(started(cry_id))
    if classify:
        feedback.reason_embedding(cry_id, classifier.classify(audio).embedding)
    feedback.cry_event(ended(cry_id))


def stored(tmp_path):
    return json.loads((tmp_path / FEEDBACK_FILE).read_text())


def test_an_answer_labels_the_latest_cry_and_teaches_the_classifier(tmp_path, classifier, cries):
    published, clock = [], Clock()
    feedback = Feedback(tmp_path, classifier, 12, published.append, clock)
    before = classifier.classify(cries[1])
    hear(feedback, classifier, cries[0], "a")
    hear(feedback, classifier, cries[1], "b")
    feedback.answer(b"tired")
    assert published == ["None", "None", "None", "tired"]  # at start-up, each new cry, then the answer
    labels = stored(tmp_path)["labels"]
    assert [(item["id"], item["reason"]) for item in labels] == [("b", "tired")]
    assert len(labels[0]["embedding"]) == len(before.embedding) and "audio" not in labels[0]
    assert classifier.adaptation.count == 1
    after = classifier.classify(cries[1])  # the same cry again: now a third of the answer's weight is on "tired"
    assert after.probs["tired"] > before.probs["tired"] + 0.2
    assert sum(after.probs.values()) == pytest.approx(1.0)


def test_answers_survive_a_restart_and_only_the_running_models_are_used(tmp_path, classifier, cries):
    feedback = Feedback(tmp_path, classifier, 12, clock=Clock())
    hear(feedback, classifier, cries[0], "a")
    feedback.answer(b"lonely")  # a reason only the parents know: the baby's model can learn it
    classifier.adaptation = BabyAdaptation([])  # a fresh start: what follows comes from the files
    Feedback(tmp_path, classifier, 12)
    assert classifier.adaptation.count == 1 and classifier.adaptation.classes == ("lonely",)
    data = stored(tmp_path)
    data["labels"][0]["model"] = "another-model"
    (tmp_path / FEEDBACK_FILE).write_text(json.dumps(data))
    Feedback(tmp_path, classifier, 12)
    assert classifier.adaptation.count == 0 and len(stored(tmp_path)["labels"]) == 1  # kept, not used


def test_an_answer_by_id_and_a_correction_replace_rather_than_add(tmp_path, classifier, cries):
    published = []
    feedback = Feedback(tmp_path, classifier, 12, published.append, Clock())
    hear(feedback, classifier, cries[0], "a")
    hear(feedback, classifier, cries[1], "b")
    feedback.answer(b"hungry")
    feedback.answer(json.dumps({"id": "a", "reason": "tired"}).encode())
    assert sorted((i["id"], i["reason"]) for i in stored(tmp_path)["labels"]) == [("a", "tired"), ("b", "hungry")]
    feedback.answer(b"burping")  # the parent corrects the last answer
    feedback.answer(json.dumps({"id": "a", "reason": DONT_KNOW}).encode())  # and takes back the other
    assert [(i["id"], i["reason"]) for i in stored(tmp_path)["labels"]] == [("b", "burping")]
    assert published[-2:] == ["hungry", "burping"]  # answers about "a" (not the latest cry) leave the select alone


@pytest.mark.parametrize("payload, why", [
    (b"sleepy", "unknown reason"),
    (b"unknown", "unknown reason"),  # the app's tag for "don't know" is not an option; the select's text is
    (json.dumps({"id": "zzz", "reason": "tired"}).encode(), "unknown or ended"),
    (b"\xff\xfe", "not UTF-8"),
    (b"tired" * 200, "longer than"),
    (b'{"reason": "tired"', "expected a reason"),
    (b'{"id": "b"}', "expected a reason"),
    (b'{"id": "b", "reason": 5}', "expected a reason"),
    (b'{"id": null, "reason": "tired"}', "expected a reason"),
    (b"{}", "expected a reason"),
    (b"null", "unknown reason"),
])
def test_bad_answers_are_rejected_with_a_reason_and_change_nothing(tmp_path, classifier, cries, payload, why):
    feedback = Feedback(tmp_path, classifier, 12, clock=Clock())
    hear(feedback, classifier, cries[0], "a")
    hear(feedback, classifier, cries[1], "b")
    feedback.answer(b"hungry")
    before = (tmp_path / FEEDBACK_FILE).read_bytes()
    with capture_logs() as logs:
        feedback.answer(payload)
    assert [r["log_level"] for r in logs] == ["warning"] and logs[0]["event"] == "feedback_rejected"
    assert why in logs[0]["error"]
    assert (tmp_path / FEEDBACK_FILE).read_bytes() == before and classifier.adaptation.count == 1


def test_answers_expire_a_window_after_the_cry_ended(tmp_path, classifier, cries):
    clock = Clock()
    feedback = Feedback(tmp_path, classifier, 2, clock=clock)
    hear(feedback, classifier, cries[0], "a")
    clock.now += 2 * HOUR - 1
    feedback.answer(b"tired")
    assert classifier.adaptation.count == 1
    clock.now += 2
    with capture_logs() as logs:
        feedback.answer(b"hungry")
    assert "no cry in the last 2 hours" in logs[0]["error"]
    assert [i["reason"] for i in stored(tmp_path)["labels"]] == ["tired"]


def test_a_cry_still_going_on_can_be_answered_but_not_one_never_classified(tmp_path, classifier, cries):
    feedback = Feedback(tmp_path, classifier, 12, clock=Clock())
    hear(feedback, classifier, cries[0], "short", classify=False)  # too short to classify: nothing to learn
    with capture_logs() as logs:
        feedback.answer(b"tired")
    assert "was not classified" in logs[0]["error"] and not (tmp_path / FEEDBACK_FILE).exists()
    feedback.cry_event(started("now"))
    feedback.reason_embedding("now", classifier.classify(cries[0]).embedding)
    feedback.answer(b"tired")
    assert [i["id"] for i in stored(tmp_path)["labels"]] == ["now"]


def test_a_cry_open_when_the_daemon_stopped_expires_a_window_after_the_restart(tmp_path, classifier, cries):
    clock = Clock()
    feedback = Feedback(tmp_path, classifier, 1, clock=clock)
    feedback.cry_event(started("cut"))
    feedback.reason_embedding("cut", classifier.classify(cries[0]).embedding)  # then the power went
    clock.now += 10 * HOUR
    restarted = Feedback(tmp_path, classifier, 1, clock=clock)
    restarted.answer(b"tired")
    clock.now += HOUR + 1
    restarted.answer(b"hungry")
    assert [i["reason"] for i in stored(tmp_path)["labels"]] == ["tired"]


def test_garbage_spends_no_answers_and_every_rejected_answer_is_logged(tmp_path, classifier, cries):
    clock, published = Clock(), []
    feedback = Feedback(tmp_path, classifier, 12, published.append, clock)
    hear(feedback, classifier, cries[0], "a")
    with capture_logs() as logs:
        for _ in range(300):  # a broken automation, 4 a second: logged once a minute with the count
            clock.now += 0.25
            feedback.answer(b"sleepy")
    assert [r["event"] for r in logs] == ["feedback_rejected"] * 2 and logs[1]["unlogged_since_last"] == 239
    feedback.answer(b"hungry")  # and the parents are still heard
    assert [i["reason"] for i in stored(tmp_path)["labels"]] == ["hungry"]
    for _ in range(FLOOD_LIMIT - 1):
        feedback.answer(b"tired")
    before = (tmp_path / FEEDBACK_FILE).read_bytes()
    with capture_logs() as logs:
        for _ in range(3):  # answers past the budget: each one said, none taken
            feedback.answer(b"burping")
    assert [r["event"] for r in logs] == ["feedback_rejected"] * 3 and all("flood" in r["error"] for r in logs)
    assert (tmp_path / FEEDBACK_FILE).read_bytes() == before
    assert published[-1] == "tired"  # the select is set back to the answer that counts
    clock.now += 61  # a minute later a parent is heard again
    feedback.answer(b"hungry")
    assert [i["reason"] for i in stored(tmp_path)["labels"]] == ["hungry"]


LABEL = {"id": "a", "reason": "tired", "embedding": [0.5, 0.1], "model": "m", "at": 1.0}
RECENT = {"id": "a", "ended_at": 5.0, "embedding": [0.5, 0.1], "model": "m"}


@pytest.mark.parametrize("name, content", [
    (FEEDBACK_FILE, "{not json"),
    (FEEDBACK_FILE, '["a list"]'),
    (FEEDBACK_FILE, json.dumps({"labels": {"a": 1}})),
    (FEEDBACK_FILE, json.dumps({"labels": [{"id": "a"}]})),
    (FEEDBACK_FILE, json.dumps({"labels": [{**LABEL, "reason": "pizza"}]})),
    (FEEDBACK_FILE, json.dumps({"labels": [{k: v for k, v in LABEL.items() if k != "model"}]})),
    (FEEDBACK_FILE, json.dumps({"labels": [{**LABEL, "embedding": 3.0}]})),
    (FEEDBACK_FILE, json.dumps({"labels": [{**LABEL, "embedding": []}]})),
    (FEEDBACK_FILE, json.dumps({"labels": [{**LABEL, "embedding": [1.0, "x"]}]})),
    (FEEDBACK_FILE, '{"labels": [{"id": "a", "reason": "tired", "embedding": [NaN], "model": "m"}]}'),
    (RECENT_FILE, json.dumps({"recent": [{**RECENT, "ended_at": "5"}]})),
    (RECENT_FILE, json.dumps({"recent": [{k: v for k, v in RECENT.items() if k != "embedding"} | {"embedding": 7}]})),
    (RECENT_FILE, json.dumps({"recent": [{"ended_at": 5.0}]})),
])
def test_a_corrupt_store_is_moved_aside_with_a_warning(tmp_path, classifier, cries, name, content):
    (tmp_path / name).write_text(content)
    with capture_logs() as logs:
        feedback = Feedback(tmp_path, classifier, 12)
    assert logs[0]["event"] == "feedback_store_corrupt" and logs[0]["log_level"] == "warning"
    aside = list(tmp_path.glob(name + ".corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == content  # kept for a human, out of the way
    assert feedback.labels == [] and feedback.recent == [] and classifier.adaptation.count == 0
    hear(feedback, classifier, cries[0], "b")  # and the monitor goes on: a cry, an answer
    feedback.answer(b"tired")
    assert classifier.adaptation.count == 1


def test_answers_of_another_models_embedding_size_are_ignored_not_fatal(tmp_path, classifier, cries):
    (tmp_path / FEEDBACK_FILE).write_text(json.dumps({"labels": [{**LABEL, "model": classifier.embedding_space}]}))
    Feedback(tmp_path, classifier, 12)
    assert classifier.adaptation.count == 1  # a two-number embedding under this model's name: tampered
    population = ReasonClassifier(ClassifierConfig(device="cpu", adaptation=False)).classify(cries[0]).probs
    assert classifier.classify(cries[0]).probs == pytest.approx(population)


def test_a_refined_reason_updates_an_answer_given_while_the_cry_went_on(tmp_path, classifier, cries):
    feedback = Feedback(tmp_path, classifier, 12, clock=Clock())
    feedback.cry_event(started("a"))
    feedback.reason_embedding("a", classifier.classify(cries[0][: 2 * 16000]).embedding)
    feedback.answer(b"tired")
    refined = classifier.classify(cries[0]).embedding
    feedback.reason_embedding("a", refined)
    assert stored(tmp_path)["labels"][0]["embedding"] == pytest.approx(list(refined), abs=1e-4)


def test_the_daemon_takes_an_answer_over_mqtt_and_rejects_bad_ones(broker, subscriber_factory, cry_then_quiet,
                                                                    tmp_path):
    from daemon_helpers import publish

    sub = subscriber_factory(broker.port, "crymonitor/fb/#")
    config = write_config(tmp_path / "c.yaml", broker.port, "fb", "classifier:\n  adaptation: on\n")
    daemon = DaemonProcess(config, "--input", str(cry_then_quiet))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_reason" for p in sub.payloads("event")), timeout=60)
        cry_id = json.loads(sub.payloads("event")[0])["id"]
        publish(broker.port, "crymonitor/fb/set/last_cry_reason", b"sleepy")
        assert "unknown reason" in daemon.wait_log("feedback_rejected")["error"]
        publish(broker.port, "crymonitor/fb/set/last_cry_reason", json.dumps({"id": cry_id, "reason": "tired"}).encode())
        accepted = daemon.wait_log("feedback_accepted")
        sub.wait_for(lambda m: ("crymonitor/fb/last_cry_reason", "tired", True) in m or
                     ("crymonitor/fb/last_cry_reason", "tired", False) in m)
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.stderr
    assert accepted["cry_id"] == cry_id and accepted["usable"] == 1 and accepted["adapting"] is True
    states = [p for t, p, _ in sub.messages if t == "crymonitor/fb/last_cry_reason"]  # not set/last_cry_reason
    assert states[-1] == "tired" and set(states[:-1]) == {"None"}  # no answer until the parent's
    labels = json.loads((tmp_path / "state" / FEEDBACK_FILE).read_text())["labels"]
    assert [(i["id"], i["reason"]) for i in labels] == [(cry_id, "tired")]


# --- "not a cry": the home's sounds ---------------------------------------------------------------------------
RULES = HoldRules(max_distance=0.1, never_above=0.99, announce_after_s=20.0)


class Home:
    """What the daemon's pipeline and Home Assistant are handed."""

    def __init__(self) -> None:
        self.sounds, self.counts, self.select = None, [], []


def marking(tmp_path, clock=None, space="det-a", classifier=None, home=None):
    home = home or Home()
    feedback = Feedback(tmp_path, classifier, 12, home.select.append, clock or Clock(), detector_space=space,
                        hold_rules=RULES, on_home=lambda h: setattr(home, "sounds", h), publish_home=home.counts.append)
    return feedback, home


def detect(feedback: Feedback, cry_id: str, embedding=(1.0, 0.0, 0.0), end: bool = True):
    """A detection as the driver reports it: its start, the detector's embedding, the chunk done, its end."""
    feedback.cry_event(started(cry_id))
    if embedding is not None:
        feedback.detection_embedding(cry_id, embedding)
    feedback.audio(None)
    if end:
        feedback.cry_event(ended(cry_id))


def home_file(tmp_path):
    return json.loads((tmp_path / HOME_FILE).read_text())


def test_not_a_cry_stores_the_detectors_embedding_and_hands_it_to_the_pipeline(tmp_path):
    feedback, home = marking(tmp_path)
    assert feedback.options == (NOT_A_CRY, DONT_KNOW)  # no reason classifier: only this answer
    detect(feedback, "cat", (0.0, 2.0, 0.0))
    feedback.answer(b"not a cry")
    sounds = home_file(tmp_path)["sounds"]
    assert [(s["id"], s["embedding"], s["model"]) for s in sounds] == [("cat", [0.0, 2.0, 0.0], "det-a")]
    assert len(home.sounds) == 1 and home.sounds.distance(np.array([0.0, 1.0, 0.0])) == pytest.approx(0.0)
    assert home.select[-1] == NOT_A_CRY and home.counts[-1] == {"kept": 1, "suppressed_today": 0}


def test_not_a_cry_for_an_unannounced_expired_or_embeddingless_cry_is_rejected_and_stores_nothing(tmp_path):
    clock = Clock()
    feedback, home = marking(tmp_path, clock)
    with capture_logs() as logs:
        feedback.answer(json.dumps({"id": "never-announced", "reason": NOT_A_CRY}).encode())
        detect(feedback, "old")
        clock.now += 13 * HOUR
        feedback.answer(json.dumps({"id": "old", "reason": NOT_A_CRY}).encode())
        detect(feedback, "no-embedding", embedding=None)
        feedback.answer(b"not a cry")
        feedback.answer(b"tired")  # no classifier: reasons are not answers here
    errors = [e["error"] for e in logs if e["event"] == "feedback_rejected"]
    assert "unknown or ended more than 12 hours ago" in errors[0] and "unknown or ended" in errors[1]
    assert "no embedding from the running detector" in errors[2] and "unknown reason 'tired'" in errors[3]
    assert not (tmp_path / HOME_FILE).exists() and home.sounds is None


def test_a_reason_replaces_a_not_a_cry_mark_and_dont_know_clears_it(tmp_path, classifier, cries):
    feedback, home = marking(tmp_path, classifier=classifier)
    feedback.cry_event(started("a"))
    feedback.detection_embedding("a", (1.0, 0.0))
    feedback.reason_embedding("a", classifier.classify(cries[0]).embedding)
    feedback.cry_event(ended("a"))
    feedback.answer(b"not a cry")
    assert len(home.sounds) == 1 and stored(tmp_path)["labels"] == []
    feedback.answer(b"hungry")  # a mis-tap corrected: it was a cry after all
    assert home.sounds is None and home_file(tmp_path)["sounds"] == []
    assert [item["reason"] for item in stored(tmp_path)["labels"]] == ["hungry"]
    feedback.answer(b"not a cry")
    feedback.answer(DONT_KNOW.encode())
    assert home.sounds is None and stored(tmp_path)["labels"] == [] and home.select[-1] == DONT_KNOW


def test_at_most_200_marks_are_kept_the_oldest_go_first_and_each_expires_after_60_days(tmp_path, monkeypatch):
    import monitor.service.feedback as fb

    clock = Clock()
    monkeypatch.setattr(fb, "FLOOD_LIMIT", 10_000)  # this test is one parent, fast
    feedback, home = marking(tmp_path, clock)
    for i in range(MAX_HOME_SOUNDS + 1):
        detect(feedback, f"c{i}", (1.0, float(i), 0.0))
        feedback.answer(b"not a cry")
        clock.now += 60.0
    ids = [s["id"] for s in home_file(tmp_path)["sounds"]]
    assert len(ids) == MAX_HOME_SOUNDS and ids[0] == "c1" and len(home.sounds) == MAX_HOME_SOUNDS
    clock.now += HOME_SOUND_DAYS * 86400 - 100 * 60.0  # the first hundred are now older than 60 days
    with capture_logs() as logs:
        feedback.day_changed()
    assert [e["count"] for e in logs if e["event"] == "not_a_cry_expired"] == [100]
    assert len(home.sounds) == MAX_HOME_SOUNDS - 100


def test_marks_of_another_detector_are_set_aside_logged_and_never_compared(tmp_path):
    feedback, _ = marking(tmp_path, space="det-a")
    detect(feedback, "cat")
    feedback.answer(b"not a cry")
    with capture_logs() as logs:
        _, home = marking(tmp_path, space="det-b")  # the model changed
    aside = [e for e in logs if e["event"] == "not_a_cry_set_aside"]
    assert aside and aside[0]["count"] == 1 and aside[0]["models"] == ["det-a"]
    assert home.sounds is None and home.counts[-1]["kept"] == 0
    assert len(home_file(tmp_path)["sounds"]) == 1  # kept in the file: a model rolled back finds them again


def test_the_button_forgets_every_mark_with_a_logged_count(tmp_path):
    feedback, home = marking(tmp_path)
    for name in ("cat", "tv"):
        detect(feedback, name)
        feedback.answer(b"not a cry")
    with capture_logs() as logs:
        feedback.forget_home_sounds(b"PRESS")
    assert [e["count"] for e in logs if e["event"] == "not_a_cry_forgotten"] == [2]
    assert home.sounds is None and home_file(tmp_path)["sounds"] == [] and home.counts[-1]["kept"] == 0


def test_suppressions_are_counted_for_today_and_survive_a_restart(tmp_path):
    feedback, home = marking(tmp_path)
    detect(feedback, "cat")
    feedback.answer(b"not a cry")
    feedback.hold(Hold("x", 1.0, "held", 0.01))  # held is not suppressed yet
    feedback.hold(Hold("x", 3.0, "suppressed", 0.01, 2.0))
    assert home.counts[-1] == {"kept": 1, "suppressed_today": 1}
    _, again = marking(tmp_path)  # a restart
    assert again.counts[-1] == {"kept": 1, "suppressed_today": 1} and len(again.sounds) == 1


def test_a_corrupt_home_file_is_moved_aside_and_the_daemon_starts_without_marks(tmp_path):
    (tmp_path / HOME_FILE).write_text('{"sounds": [{"id": "x", "embedding": "not numbers"}]}')
    with capture_logs() as logs:
        _, home = marking(tmp_path)
    assert any(e["event"] == "feedback_store_corrupt" for e in logs)
    assert list(tmp_path.glob(f"{HOME_FILE}.corrupt-*")) and home.sounds is None


# ---------------------------------------------------------------- the learner classifier.adaptation names

def seed_answers(state_dir, *reasons, model="an-older-model"):
    """Answers stored earlier (by another model: the counts take them, the prototypes do not)."""
    state_dir.mkdir(exist_ok=True)
    labels = [{"id": f"old{i}", "reason": r, "embedding": [0.1, 0.2], "model": model, "at": 1.0}
              for i, r in enumerate(reasons)]
    (state_dir / FEEDBACK_FILE).write_text(json.dumps({"labels": labels}))


def test_the_majority_counts_every_stored_answer_and_gives_their_shares(tmp_path, cries):
    seed_answers(tmp_path, "tired", "lonely", "tired")
    classifier = ReasonClassifier(ClassifierConfig(device="cpu", adaptation="majority"))
    feedback = Feedback(tmp_path, classifier, 12, clock=Clock())
    assert isinstance(classifier.adaptation, BabyMajority) and classifier.adaptation.count == 3
    reason = classifier.classify(cries[0])
    assert reason.probs == pytest.approx({"tired": 2 / 3, "lonely": 1 / 3, "belly_pain": 0.0, "burping": 0.0,
                                          "discomfort": 0.0, "hungry": 0.0})
    assert reason.reason == "uncertain" and reason.confidence == pytest.approx(2 / 3)  # below min_confidence 0.9
    hear(feedback, classifier, cries[1], "a")
    feedback.answer(b"tired")  # and a new answer counts at once
    assert classifier.classify(cries[0]).probs["tired"] == pytest.approx(3 / 4)


def test_the_prior_uses_the_models_fitted_values_on_its_population_probabilities(tmp_path, cries):
    seed_answers(tmp_path, "scared", "scared", "hungry", model="x")
    fitted = read_manifest(MODELS_DIR)["classifier.onnx"].answer_prior
    classifier = ReasonClassifier(ClassifierConfig(device="cpu", adaptation="prior"))
    population = ReasonClassifier(ClassifierConfig(device="cpu", adaptation="off"))
    Feedback(tmp_path, classifier, 12)
    Feedback(tmp_path, population, 12)
    assert isinstance(classifier.adaptation, AnswerPrior) and classifier.adaptation.count == 3
    assert population.adapting is False and population.adaptation.count == 0  # off: the prototypes it would use
    for cry in cries:
        probs = classifier.classify(cry).probs
        expected = AnswerPrior([("scared", None)] * 2 + [("hungry", None)], **fitted).adapt(population.classify(cry).probs)
        assert probs == pytest.approx(expected) and sum(probs.values()) == pytest.approx(1.0)
        assert set(probs) == {*population.classes, "scared"}


@pytest.mark.parametrize("setting", ["auto", "prior"])
def test_the_daemon_names_the_reason_its_learner_gives_from_the_stored_answers(broker, subscriber_factory,
                                                                               cry_then_quiet, tmp_path, setting):
    seed_answers(tmp_path / "state", "lonely", "lonely", "lonely")
    sub = subscriber_factory(broker.port, "crymonitor/ad/#")
    config = write_config(tmp_path / "c.yaml", broker.port, "ad", f"classifier:\n  adaptation: {setting}\n")
    daemon = DaemonProcess(config, "--input", str(cry_then_quiet))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_reason" for p in sub.payloads("event")), timeout=60)
        loaded = daemon.wait_log("feedback_loaded")
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.stderr
    assert loaded["usable"] == 3 and loaded["adapting"] is True
    event = next(json.loads(p) for p in sub.payloads("event") if json.loads(p)["type"] == "cry_reason")
    assert sum(event["probs"].values()) == pytest.approx(1.0, abs=1e-3)
    assert set(event["probs"]) == {*read_manifest(MODELS_DIR)["classifier.onnx"].kwargs["classes"], "lonely"}
    assert event["reason"] == "lonely"  # the only answer; a reason the population model never learned
    if setting == "auto":  # the shipped model's study chose the majority: the answers' shares, whatever the sound
        assert event["probs"]["lonely"] == 1.0 and event["confidence"] == 1.0
    else:
        assert 0.9 <= event["probs"]["lonely"] < 1.0


@pytest.fixture
def cat_thrice(tmp_path, val_clips):
    """A held-out cat meow (a sound the detector takes for a cry at a sensitive setting) three times, 15 s apart: the
    first is marked "not a cry", the later ones must be held back. (Whether one meow raises an alarm depends on
    where the windows fall on it; at this offset all three do when nothing is marked.)"""
    cat = read_file(next(c for c in val_clips if c.group == "tux-sfx:blackcat").path) * 0.5
    quiet = (np.random.default_rng(0).standard_normal(15 * 16000) * 1e-3).astype(np.float32)
    path = tmp_path / "cat_thrice.wav"
    import soundfile as sf

    sf.write(path, np.concatenate([quiet[:40000], cat, quiet, cat, quiet, cat, quiet[: 8 * 16000]]), 16000,
             subtype="FLOAT")
    return path


def models_with_rules(folder, max_distance: float):
    """The shipped default detector beside a manifest whose not-a-cry rules hold the same meow back (the shipped
    rules come from the study and may hold nothing; this tests the daemon's path, not the rules)."""
    import shutil

    folder.mkdir()
    model = "detector-yamnet-lwf-int8.onnx"
    shutil.copy(MODELS_DIR / model, folder / model)
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    manifest[model]["not_a_cry"] = {"max_distance": max_distance, "never_above": 0.999, "announce_after_s": 30.0,
                                    "on_by_default": True}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder / model


def test_the_daemon_holds_back_a_sound_marked_not_a_cry_and_forgets_on_the_button(broker, subscriber_factory,
                                                                                   cat_thrice, tmp_path):
    from daemon_helpers import publish

    model = models_with_rules(tmp_path / "models", max_distance=0.2)
    sub = subscriber_factory(broker.port, "crymonitor/nc/#")
    config = write_config(tmp_path / "c.yaml", broker.port, "nc",
                          f"detector:\n  model: {model}\n  not_a_cry: auto\n"
                          "events:\n  start_threshold: 0.9\n  confirm_windows: 2\n  of_windows: 3\n")
    daemon = DaemonProcess(config, "--input", str(cat_thrice))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_end" for p in sub.payloads("event")), timeout=40)
        publish(broker.port, "crymonitor/nc/set/last_cry_reason", b"not a cry")
        accepted = daemon.wait_log("feedback_accepted")
        suppressed = daemon.wait_log("detection_suppressed", timeout=40)
        sub.wait_for(lambda m: any(json.loads(p)["kept"] == 1 and json.loads(p)["suppressed_today"] >= 1
                                   for p in sub.payloads("not_a_cry")))
        publish(broker.port, "crymonitor/nc/set/forget_not_a_cry", b"PRESS")
        forgotten = daemon.wait_log("not_a_cry_forgotten")
        sub.wait_for(lambda m: any(json.loads(p)["kept"] == 0 and json.loads(p)["suppressed_today"] >= 1
                                   for p in sub.payloads("not_a_cry")))
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.stderr
    starts = [json.loads(p) for p in sub.payloads("event") if json.loads(p)["type"] == "cry_start"]
    assert len(starts) == 1 and accepted["reason"] == NOT_A_CRY and accepted["not_a_cry"] == 1
    assert 0 <= suppressed["distance"] <= 0.2 and forgotten["count"] == 1


def test_a_flood_of_not_a_cry_answers_or_button_presses_is_rate_limited(tmp_path):
    feedback, home = marking(tmp_path)
    detect(feedback, "cat")
    with capture_logs() as logs:
        for _ in range(FLOOD_LIMIT):
            feedback.answer(b"not a cry")
        feedback.answer(b"not a cry")
        feedback.forget_home_sounds(b"PRESS")
    assert [e["error"] for e in logs if e["event"] == "feedback_rejected"][-1].startswith("more than")
    assert any(e["event"] == "command_rejected" and "flood" in e["error"] for e in logs)
    assert len(home_file(tmp_path)["sounds"]) == 1 and len(home.sounds) == 1  # the flood forgot nothing


def test_the_daemon_rejects_bad_not_a_cry_answers_sets_a_corrupt_store_aside_and_keeps_marks_across_a_restart(
        broker, subscriber_factory, cat_thrice, tmp_path):
    from daemon_helpers import quiet_file
    from daemon_helpers import publish

    model = models_with_rules(tmp_path / "models", max_distance=0.2)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / HOME_FILE).write_text("{not json")
    sub = subscriber_factory(broker.port, "crymonitor/nr/#")
    config = write_config(tmp_path / "c.yaml", broker.port, "nr",
                          f"detector:\n  model: {model}\n"
                          "events:\n  start_threshold: 0.9\n  confirm_windows: 2\n  of_windows: 3\n")
    daemon = DaemonProcess(config, "--input", str(cat_thrice))
    try:
        corrupt = daemon.wait_log("feedback_store_corrupt")
        sub.wait_for(lambda m: "online" in sub.payloads("status"))  # subscribed to its commands by then
        publish(broker.port, "crymonitor/nr/set/last_cry_reason", json.dumps({"id": "nope", "reason": NOT_A_CRY}).encode())
        unknown = daemon.wait_log("feedback_rejected")
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_end" for p in sub.payloads("event")), timeout=40)
        for _ in range(FLOOD_LIMIT + 1):
            publish(broker.port, "crymonitor/nr/set/last_cry_reason", b"not a cry")
        sub.wait_for(lambda m: any(json.loads(p)["kept"] == 1 for p in sub.payloads("not_a_cry")))
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.stderr
    assert list((tmp_path / "state").glob(f"{HOME_FILE}.corrupt-*")) and corrupt["path"].endswith(HOME_FILE)
    assert "unknown or ended" in unknown["error"]
    rejected = [r["error"] for r in daemon.logs() if r["event"] == "feedback_rejected"]
    assert any(e.startswith(f"more than {FLOOD_LIMIT} answers") for e in rejected)
    again = DaemonProcess(config, "--input", str(quiet_file(tmp_path / "quiet.wav", 3)))
    try:
        loaded = again.wait_log("feedback_loaded")
        again.wait_log("daemon_started")  # its signal handlers are in place: the stop below is a clean one
    finally:
        code, _ = again.stop(signal.SIGTERM)
    assert code == 0, again.stderr
    assert loaded["not_a_cry"] == 1  # the mark survived the restart; the flood added nothing


def publish_many(port: int, topic: str, payloads: list[bytes]) -> None:
    """Each payload in order, from one client (a busy automation)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"many-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for payload in payloads:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_garbage_on_the_answer_topic_does_not_lock_the_parents_out(broker, subscriber_factory, cry_then_quiet,
                                                                   tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/budget/#")
    topic = "crymonitor/budget/set/last_cry_reason"
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "budget"), "--input", str(cry_then_quiet))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_reason" for p in sub.payloads("event")), timeout=60)
        publish_many(broker.port, topic, [b'{"reason": 5}'] * (2 * FLOOD_LIMIT))  # a broken automation
        publish_many(broker.port, topic, [b"tired"] + [b"hungry"] * (FLOOD_LIMIT - 1) + [b"burping"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any("flood" in r.get("error", "") for r in daemon.logs()):
            time.sleep(0.05)
        sub.wait_for(lambda m: sub.payloads("last_cry_reason")[-2:] == ["hungry", "hungry"])
    finally:
        daemon.stop(signal.SIGTERM)
    rejected = [r for r in daemon.logs() if r["event"] == "feedback_rejected"]
    assert len(rejected) == 2 and "expected a reason" in rejected[0]["error"]  # the garbage: logged once
    assert "flood" in rejected[1]["error"]  # the one answer past the budget: said, not silently dropped
    assert sum(r["event"] == "feedback_accepted" for r in daemon.logs()) == FLOOD_LIMIT
    labels = json.loads((tmp_path / "state" / FEEDBACK_FILE).read_text())["labels"]
    assert [label["reason"] for label in labels] == ["hungry"]  # and the select shows it, again, after the refusal


def test_an_answer_taken_while_the_disk_is_full_is_written_once_it_has_room(broker, subscriber_factory, small_disk,
                                                                           cry_then_quiet, tmp_path):
    from daemon_helpers import publish

    state = small_disk / "state"
    config = tmp_path / "c.yaml"
    config.write_text(f"mqtt:\n  port: {broker.port}\n  device_id: full\nstate:\n  dir: {state}\n"
                      "logging:\n  format: json\n")
    filler = fill(small_disk)
    sub = subscriber_factory(broker.port, "crymonitor/full/#")
    daemon = DaemonProcess(config, "--input", str(cry_then_long_quiet(tmp_path, cry_then_quiet)))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_reason" for p in sub.payloads("event")), timeout=60)
        publish(broker.port, "crymonitor/full/set/last_cry_reason", b"tired")
        daemon.wait_log("feedback_accepted")  # Home Assistant shows it as taken ...
        unwritable = daemon.wait_log("feedback_store_unwritable")
        assert not (state / FEEDBACK_FILE).exists()  # ... but the disk did not take it
        filler.unlink()
        written = daemon.wait_log("feedback_store_written", timeout=15)  # without a restart
        labels = json.loads((state / FEEDBACK_FILE).read_text())["labels"]
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0 and unwritable["level"] == "error" and written["path"] == str(state / FEEDBACK_FILE)
    assert [label["reason"] for label in labels] == ["tired"]


def test_a_not_a_cry_of_another_size_than_the_homes_sounds_is_rejected_and_the_detection_is_saved_at_once(tmp_path):
    feedback, home = marking(tmp_path)
    detect(feedback, "cat", (1.0, 0.0, 0.0))
    feedback.answer(b"not a cry")
    feedback.cry_event(started("odd"))  # still going on
    feedback.detection_embedding("odd", (1.0, 0.0))
    saved = lambda: json.loads((tmp_path / RECENT_FILE).read_text())["recent"][-1]  # noqa: E731
    assert saved()["id"] != "odd"  # not written before the chunk's events (the alarm) went out...
    feedback.audio(None)
    assert saved()["id"] == "odd" and saved()["detector_embedding"] == [1.0, 0.0]  # ...but right after: a crash keeps it
    with capture_logs() as logs:
        feedback.answer(b"not a cry")
    assert "not mixing them" in [e["error"] for e in logs if e["event"] == "feedback_rejected"][0]
    assert len(home.sounds) == 1
