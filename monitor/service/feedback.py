"""The parents' answers to "Last cry was …": validated, stored in the state folder, and taught to the classifier.

Home Assistant's select sends a bare option to ``<topic>/set/last_cry_reason``: it labels the most recent cry. An
automation may name the cry instead: ``{"id": "<cry id>", "reason": "tired"}``. Options: every reason of the
Donate-a-cry app (:data:`monitor.core.events.PARENT_REASONS`) and "don't know" (which clears an earlier answer for
that cry and teaches nothing).

Rules (``tests/test_feedback.py``); a rejected answer changes nothing stored. A well-formed one is logged every time
(``feedback_rejected`` with why), and the select is set again to the answer that counts for the latest cry (Home
Assistant may show the option tapped). A malformed message is logged at once, then at most once a minute with the
count since, so a broken automation cannot fill the disk with logs:

* the cry must be one of the recent ones this daemon heard (kept with their embeddings, across restarts) and must
  have ended at most ``classifier.feedback_window_hours`` ago (a cry still going on can be labelled);
* the reason must be one of the options, the payload UTF-8 text or that JSON object, at most 512 bytes;
* the cry must have been classified (its embedding is what is learned; a cry too short to classify has none);
* at most :data:`FLOOD_LIMIT` answers per :data:`FLOOD_SECONDS`: more is a stuck automation or a flood, not a
  parent, and is rejected. Only well-formed answers count: a broken automation publishing garbage must not lock
  the parents out;
* a new answer for a cry replaces the old one (a mis-tap is corrected, not counted twice).

**Not a cry** (when the detector's marks are on, ``detector.not_a_cry``): the answer ``not a cry`` stores the
cry's *detector* embedding (the windows that confirmed it, :mod:`monitor.core.home_sounds`; never audio) as one of
this home's sounds, and from then on a detection that sounds like it is held back. The same rules apply (the cry
must be one this daemon announced, within the window; the flood limit), and the cry must carry a detector
embedding. It replaces a reason answered for that cry, and a later reason replaces it. At most
:data:`MAX_HOME_SOUNDS` are kept (the oldest go first) and each for :data:`HOME_SOUND_DAYS` days. They belong to
the detector's weights: after a model change the old ones are set aside (kept in the file, never compared, logged
at start) until they expire or are forgotten. ``<topic>/set/forget_not_a_cry`` (Home Assistant's button) forgets
them all, logged with the count. ``not_a_cry.json`` holds them and today's count of suppressed detections.

What is stored, written atomically: ``feedback.json``, each labelled cry's id, reason, embedding, the classifier it
came from and when (written when an answer comes: up to a few MB); ``recent_cries.json``, the recent cries' ids,
end times and embeddings (small; written at each cry); a write the disk refuses (full) is tried again every few
seconds until it takes it (:meth:`Feedback.write_unwritten`). Never audio (the clips feature's, if enabled). All
labels go to :meth:`~monitor.inference.classify.ReasonClassifier.teach`: the answer counts of ``prior`` and
``majority`` use every one, ``prototypes`` only those from the running classifier's weights (another model's
embeddings live in another space; a ``.pt`` and its ONNX export share one); all stay in the file. A file that is
not strict JSON (:func:`~monitor.service.state.read_json`), or has any entry of the wrong shape, or embeddings of
one model with different lengths, is moved aside (``<name>.corrupt-<time>``) with a warning, and the daemon
starts without what it held.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import structlog

from monitor.core.control import CommandError, command_text
from monitor.core.events import DONT_KNOW, PARENT_REASONS
from monitor.core.home_sounds import Hold, HoldRules, HomeSounds
from monitor.driver import Emitted, Sink
from monitor.service.homeassistant import FEEDBACK_CONTROL, NOT_A_CRY, feedback_options
from monitor.service.state import StateFileError, read_json, set_aside, write_json

log = structlog.get_logger(__name__)

FEEDBACK_FILE = "feedback.json"  # the answers: written when one comes
RECENT_FILE = "recent_cries.json"  # the cries that can still be answered: written at each cry
HOME_FILE = "not_a_cry.json"  # the home's "not a cry" sounds and today's suppressions
MAX_HOME_SOUNDS = 200
HOME_SOUND_DAYS = 60
FLOOD_LIMIT, FLOOD_SECONDS = 10, 60.0
MAX_PAYLOAD = 512
MAX_LABELS = 1000  # the oldest go first; a year of answers at three a day
MAX_RECENT = 50  # cries remembered for labelling (the window bounds them too)


def _valid_embedding(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)


def _valid_label(item: object) -> bool:
    return (isinstance(item, dict) and isinstance(item.get("id"), str) and item.get("reason") in PARENT_REASONS
            and isinstance(item.get("model"), str) and _valid_embedding(item.get("embedding")))


def _valid_time(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _valid_recent(item: object) -> bool:
    ended = item.get("ended_at") if isinstance(item, dict) else None
    return (isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("model"), str)
            and (ended is None or _valid_time(ended))
            and (item.get("embedding") is None or _valid_embedding(item.get("embedding")))
            and (item.get("detector_embedding") is None or (_valid_embedding(item.get("detector_embedding"))
                                                            and isinstance(item.get("detector_model"), str))))


def _valid_sound(item: object) -> bool:
    return (isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("model"), str)
            and _valid_embedding(item.get("embedding")) and _valid_time(item.get("at")))


def _suppressed_today(stored: object) -> dict:
    """Today's count of suppressed detections, as the home file holds it (another day's, or none, counts 0)."""
    if (isinstance(stored, dict) and stored.get("day") == date.today().isoformat()
            and isinstance(stored.get("count"), int) and not isinstance(stored.get("count"), bool)):
        return stored
    return {"day": date.today().isoformat(), "count": 0}


class FeedbackRejected(Exception):
    """An answer that is not taken; the message says why, in one line. ``malformed``: not an answer at all (not
    one of the options, or not that JSON object)."""

    def __init__(self, message: str, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


class Feedback(Sink):
    """A sink that remembers recent cries' embeddings, and the handler of the answers (:meth:`answer`).
    ``classifier``: whose :attr:`adaptation` it keeps up to date (None: no reasons are answered); ``publish``: the
    select's state (``"None"``: not answered yet). ``detector_space`` and ``hold_rules``: the detector's embedding
    space and its "not a cry" rules (None: that answer is off); ``on_home``: takes each new set of the home's
    sounds (the pipeline's :attr:`~monitor.core.pipeline.Pipeline.home`); ``publish_home``: their counts."""

    def __init__(self, state_dir: Path, classifier, window_hours: float,
                 publish: Callable[[str], None] | None = None, clock: Callable[[], float] = time.time,
                 detector_space: str | None = None, hold_rules: HoldRules | None = None,
                 on_home: Callable[[HomeSounds | None], None] | None = None,
                 publish_home: Callable[[dict], None] | None = None) -> None:
        self.path, self.recent_path, self.home_path = state_dir / FEEDBACK_FILE, state_dir / RECENT_FILE, state_dir / HOME_FILE
        self.classifier, self.window_s, self.publish, self.clock = classifier, window_hours * 3600.0, publish, clock
        self.detector_space = detector_space
        self.hold_rules = hold_rules if detector_space else None
        self.on_home, self.publish_home = on_home, publish_home
        self.options = feedback_options(classifier is not None, self.hold_rules is not None)
        self._attempts: deque[float] = deque()
        self._recent_unsaved = False  # a detection's embedding came: written after its chunk went out (audio())
        self.unwritten: set[Path] = set()  # files whose last write failed (disk full), retried
        self._malformed_logged_at, self._malformed_unlogged = -math.inf, 0
        self.labels = self._read(self.path, "labels", _valid_label)[0]
        self.recent = self._read(self.recent_path, "recent", _valid_recent)[0]
        self.sounds, home = self._read(self.home_path, "sounds", _valid_sound)
        self._suppressed = _suppressed_today(home.get("suppressed"))
        for item in self.recent:  # a cry open when the daemon stopped ended then (state.py ends it with "restart")
            if item["ended_at"] is None:
                item["ended_at"] = self.clock()
        self._teach()
        self._expire_sounds()
        set_aside_sounds = [item for item in self.sounds if item["model"] != self.detector_space]
        if set_aside_sounds:
            log.warning("not_a_cry_set_aside", count=len(set_aside_sounds),
                        models=sorted({item["model"][:12] for item in set_aside_sounds}),
                        detail="marked with another detector's weights: kept in the file, never compared")
        self._hold_home()
        self._show_answer()
        log.info("feedback_loaded", labels=len(self.labels),
                 usable=self.classifier.adaptation.count if self.classifier else 0,
                 adapting=self.classifier.adapting if self.classifier else False,
                 not_a_cry=len(self._home_sounds()) if self.hold_rules else None)

    # --- the store: labels are written when an answer comes, the recent cries (small) at each cry ------------
    def _read(self, path: Path, key: str, valid: Callable[[object], bool]) -> tuple[list[dict], dict]:
        """The file's ``key`` entries and the whole file (empty when it is missing or was set aside)."""
        try:
            data = read_json(path)
            items = data.get(key) if isinstance(data, dict) else None
            if not isinstance(items, list) or not all(valid(item) for item in items):
                raise StateFileError(f"a {key} entry of the wrong shape")
            lengths = {}  # one model's embeddings have one length: BabyAdaptation stacks them
            for item in items:
                if item.get("embedding") is not None and lengths.setdefault(
                        item["model"], len(item["embedding"])) != len(item["embedding"]):
                    raise StateFileError(f"embeddings of model {item['model'][:20]} differ in length")
            return items, data
        except FileNotFoundError:
            return [], {}
        except (OSError, StateFileError) as exc:
            aside = set_aside(path)
            log.warning("feedback_store_corrupt", path=str(path), error=str(exc)[:200],
                        moved_to=str(aside) if aside else None, detail=f"starting with no {key}")
            return [], {}

    def _write(self, path: Path) -> None:
        """Write one of the three files as it is now. One that cannot be written (a full disk) is kept in memory
        and written again by :meth:`write_unwritten`, like the outbox: an answer Home Assistant showed as taken
        must survive the next restart."""
        content = ({"labels": self.labels} if path == self.path else {"recent": self.recent} if path == self.recent_path
                   else {"sounds": self.sounds, "suppressed": self._suppressed})
        try:
            write_json(path, content)
        except OSError as exc:
            if path not in self.unwritten:  # once per outage, not at every retry
                log.error("feedback_store_unwritable", path=str(path), error=exc.strerror,
                          detail="kept in memory; written as soon as the disk takes it")
            self.unwritten.add(path)
            return
        if path in self.unwritten:
            self.unwritten.discard(path)
            log.warning("feedback_store_written", path=str(path), detail="after it could not be")

    def write_all(self) -> None:
        """Every file as it is now (the state folder was made again)."""
        self._write(self.path)
        self._write(self.recent_path)
        self._write(self.home_path)

    def write_unwritten(self) -> None:
        """Try again the files that could not be written."""
        for path in sorted(self.unwritten):
            self._write(path)

    def close(self) -> None:
        self.audio(None)
        self.write_unwritten()
        for path in self.unwritten:  # the last chance is gone: say what is lost, never silently
            log.error("feedback_store_lost_at_exit", path=str(path), detail="the disk never took it")

    def _teach(self) -> None:
        if self.classifier is not None:
            self.classifier.teach(self.labels)

    # --- the sink: which cries can be labelled ------------------------------------------------------------
    def cry_event(self, emitted: Emitted) -> None:
        event = emitted.event
        if event.type == "cry_start":
            space = self.classifier.embedding_space if self.classifier else "none"
            self.recent = [*self.recent, {"id": event.id, "ended_at": None, "embedding": None,
                                          "model": space}][-MAX_RECENT:]
            if self.publish:
                self.publish("None")  # the new cry has no answer yet
        else:
            for item in self.recent:
                if item["id"] == event.id:
                    item["ended_at"] = self.clock()
            self._forget_expired()
            self._write(self.recent_path)

    def reason_embedding(self, cry_id: str, embedding: tuple[float, ...]) -> None:
        """The latest reason's embedding is the cry's (a refined reason heard more of it), also for an answer
        given while the cry went on."""
        rounded = [round(v, 4) for v in embedding]
        for item in self.recent:
            if item["id"] == cry_id:
                item["embedding"] = rounded
                self._write(self.recent_path)  # a reason may come after its cry ended
        if any(item["id"] == cry_id for item in self.labels):
            self.labels = [{**item, "embedding": rounded} if item["id"] == cry_id else item for item in self.labels]
            self._write(self.path)
            self._teach()

    def detection_embedding(self, cry_id: str, embedding: tuple[float, ...]) -> None:
        """Kept with the recent cry (written with it at its end), for a "not a cry" answer."""
        if self.detector_space is None:
            return
        for item in self.recent:
            if item["id"] == cry_id:
                item["detector_embedding"] = [round(v, 4) for v in embedding]
                item["detector_model"] = self.detector_space
                self._recent_unsaved = True

    def audio(self, chunk) -> None:
        """After the chunk's events went out: a detection's embedding is saved now, not at the cry's end (after a
        crash the cry can still be marked), and not before the alarm is published (the file is hundreds of KB)."""
        if self._recent_unsaved:
            self._recent_unsaved = False
            self._write(self.recent_path)

    def hold(self, note: Hold) -> None:
        """A suppressed detection counts for today (the diagnostic sensor)."""
        if note.outcome != "suppressed":
            return
        today = date.today().isoformat()
        if self._suppressed["day"] != today:
            self._suppressed = {"day": today, "count": 0}
        self._suppressed["count"] += 1
        self._write(self.home_path)
        self._show_home()

    # --- the home's "not a cry" sounds ---------------------------------------------------------------------
    def _home_sounds(self) -> list[dict]:
        return [item for item in self.sounds if item["model"] == self.detector_space]

    def _expire_sounds(self) -> None:
        oldest = self.clock() - HOME_SOUND_DAYS * 86400.0
        kept = [item for item in self.sounds if item["at"] >= oldest]
        if len(kept) != len(self.sounds):
            log.info("not_a_cry_expired", count=len(self.sounds) - len(kept), days=HOME_SOUND_DAYS)
            self.sounds = kept
            self._write(self.home_path)

    def _hold_home(self) -> None:
        """Hand the current sounds to the pipeline and their counts to Home Assistant."""
        sounds = self._home_sounds()
        if self.on_home is not None:
            self.on_home(HomeSounds(np.array([item["embedding"] for item in sounds]), self.hold_rules)
                         if self.hold_rules and sounds else None)
        self._show_home()

    def _show_home(self) -> None:
        if self.publish_home and self.hold_rules:
            today = date.today().isoformat()
            self.publish_home({"kept": len(self._home_sounds()),
                               "suppressed_today": self._suppressed["count"] if self._suppressed["day"] == today else 0})

    def day_changed(self) -> None:
        """Midnight: today's count starts at 0 (the watch loop calls it)."""
        self._expire_sounds()
        self._hold_home()

    def forget_home_sounds(self, payload: bytes) -> None:
        """The button: every "not a cry" sound is forgotten (those set aside after a model change too)."""
        if self.hold_rules is None:
            log.warning("command_rejected", control="forget_not_a_cry", error="not-a-cry marks are off")
            return
        if not self._within_budget():
            log.warning("command_rejected", control="forget_not_a_cry",
                        error=f"more than {FLOOD_LIMIT} answers in {FLOOD_SECONDS:.0f} s; ignoring the flood")
            return
        count, self.sounds = len(self.sounds), []
        self._write(self.home_path)
        self._hold_home()
        log.info("not_a_cry_forgotten", count=count)

    def _forget_expired(self) -> None:
        now = self.clock()
        self.recent = [c for c in self.recent if c["ended_at"] is None or now - c["ended_at"] <= self.window_s]

    # --- answers ------------------------------------------------------------------------------------------
    def answer(self, payload: bytes) -> None:
        """Take one answer, or log why not; nothing stored changes on a rejection."""
        try:
            cry, reason = self._validate(payload)
        except FeedbackRejected as exc:
            if not exc.malformed:
                log.warning("feedback_rejected", error=str(exc), payload_bytes=len(payload))
                self._show_answer()
            elif self.clock() - self._malformed_logged_at < FLOOD_SECONDS:
                self._malformed_unlogged += 1
            else:
                log.warning("feedback_rejected", error=str(exc), payload_bytes=len(payload),
                            unlogged_since_last=self._malformed_unlogged)
                self._malformed_logged_at, self._malformed_unlogged = self.clock(), 0
            return
        self.labels = [item for item in self.labels if item["id"] != cry["id"]]
        if reason not in (DONT_KNOW, NOT_A_CRY):
            self.labels.append({"id": cry["id"], "reason": reason, "embedding": cry["embedding"],
                                "model": cry["model"], "at": round(self.clock(), 3)})
            self.labels = self.labels[-MAX_LABELS:]
        self._write(self.path)
        self._teach()
        marked = any(item["id"] == cry["id"] for item in self.sounds)
        if marked or reason == NOT_A_CRY:
            self.sounds = [item for item in self.sounds if item["id"] != cry["id"]]
            if reason == NOT_A_CRY:
                self.sounds.append({"id": cry["id"], "embedding": cry["detector_embedding"],
                                    "model": cry["detector_model"], "at": round(self.clock(), 3)})
                mine = [item for item in self.sounds if item["model"] == self.detector_space]
                excess = {item["id"] for item in mine[: max(0, len(mine) - MAX_HOME_SOUNDS)]}  # the oldest go
                self.sounds = [item for item in self.sounds if item["id"] not in excess]
            self._write(self.home_path)
            self._hold_home()
        log.info("feedback_accepted", cry_id=cry["id"], reason=reason, labels=len(self.labels),
                 usable=self.classifier.adaptation.count if self.classifier else 0,
                 adapting=self.classifier.adapting if self.classifier else False,
                 **({"not_a_cry": len(self._home_sounds())} if self.hold_rules else {}))
        if self.publish and cry is self.recent[-1]:
            self.publish(reason)

    def _show_answer(self) -> None:
        """The select's state: the answer that counts for the latest cry, ``"None"`` before one."""
        if self.publish:
            answered = {**{item["id"]: NOT_A_CRY for item in self.sounds},
                        **{item["id"]: item["reason"] for item in self.labels}}
            self.publish(answered.get(self.recent[-1]["id"], "None") if self.recent else "None")

    def _validate(self, payload: bytes) -> tuple[dict, str]:
        try:
            text = command_text(payload, MAX_PAYLOAD, FEEDBACK_CONTROL)
        except CommandError as exc:
            raise FeedbackRejected(str(exc), malformed=True) from None
        cry_id = None
        if text.startswith("{"):
            try:
                message = json.loads(text)
                cry_id, text = message["id"], message["reason"]
                if not isinstance(cry_id, str) or not isinstance(text, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise FeedbackRejected('expected a reason or {"id": "<cry id>", "reason": "<reason>"}',
                                       malformed=True) from None
        if text not in self.options:
            raise FeedbackRejected(f"unknown reason {text[:40]!r}; known: {', '.join(self.options)}",
                                   malformed=True)
        if not self._within_budget():
            raise FeedbackRejected(f"more than {FLOOD_LIMIT} answers in {FLOOD_SECONDS:.0f} s; ignoring the flood")
        self._forget_expired()
        if cry_id is None:  # the select: the latest cry
            if not self.recent:
                raise FeedbackRejected(f"no cry in the last {self.window_s / 3600:g} hours to label")
            cry = self.recent[-1]
        else:
            matches = [c for c in self.recent if c["id"] == cry_id]
            if not matches:
                raise FeedbackRejected(f"cry {str(cry_id)[:40]!r} is unknown or ended more than "
                                       f"{self.window_s / 3600:g} hours ago")
            cry = matches[0]
        if text == NOT_A_CRY:
            if cry.get("detector_model") != self.detector_space or cry.get("detector_embedding") is None:
                raise FeedbackRejected(f"cry {cry['id']} has no embedding from the running detector; "
                                       "there is nothing to remember it by")
            sizes = {len(item["embedding"]) for item in self._home_sounds()}
            if sizes and sizes != {len(cry["detector_embedding"])}:
                raise FeedbackRejected(f"cry {cry['id']}'s embedding has {len(cry['detector_embedding'])} numbers, "
                                       f"the home's sounds {sizes.pop()}; not mixing them")
        elif cry["embedding"] is None and text != DONT_KNOW:
            raise FeedbackRejected(f"cry {cry['id']} was not classified; there is nothing to learn from")
        return cry, text

    def _within_budget(self) -> bool:
        """Spend one of the :data:`FLOOD_LIMIT` answers per :data:`FLOOD_SECONDS` (only well-formed ones spend)."""
        now = self.clock()
        while self._attempts and now - self._attempts[0] > FLOOD_SECONDS:
            self._attempts.popleft()
        self._attempts.append(now)
        return len(self._attempts) <= FLOOD_LIMIT
