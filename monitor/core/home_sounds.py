"""This home's "not a cry" sounds, and the rule that keeps them from raising the same false alarm again. Pure.

A parent who marks a detection "not a cry" (:mod:`monitor.service.feedback`) stores that detection's *detector
embedding*: what the detector itself heard in the windows that confirmed it, never audio. At the next
confirmation the detection is compared with those sounds. Rules (``tests/test_home_sounds.py``):

* A detection's embedding is the mean of the L2-normalised embeddings of the windows that confirmed it (the
  recent windows at or above the start threshold, as the state machine counts them), normalised again.
* Its *distance* to the home's sounds is the smallest cosine distance ``1 − cos`` to one of them (∞ with none).
* A ``cry_start`` is **held** (not announced) when that distance is at most ``max_distance`` and no confirming
  window scored ``never_above`` or more: a score the study saw only real cries reach (:class:`HoldRules`).
* While held, every window checks again. The cry is **announced** at once (a ``cry_start`` at that window's time,
  with the cry's own id) when a window scores ``never_above`` or more, when the confirming windows' embedding is no
  longer within ``max_distance`` (the sound changed: a baby who starts crying beside the cat), or when the
  detection has gone on for ``announce_after_s``: a long cry is announced, however close it sounds.
* A held detection that ends is **suppressed**: neither its start nor its end goes out, and it leaves no
  cool-down (:meth:`HoldBack.decide` clears the state machine's), so a cry right after it is not delayed. A detection
  held within ``announce_after_s`` of a suppressed one continues its episode: ``announce_after_s`` counts from the
  first, so a cry in short bouts is announced all the same. One ended by ``max_duration`` is announced (start and
  end). One cut off by a pause or shutdown is ``dropped``, not counted as suppressed.
* An announced detection's ``cry_start`` carries the time it was announced; its ``cry_end``'s ``duration_s`` counts
  from when the sound was first confirmed, as the statistics do.
* A mark of another size than the detection's embedding never matches (a distance of ∞).

Each decision is a :class:`Hold` note (``held``, ``announced`` with why, ``suppressed``) for the log and counts.
The three numbers of :class:`HoldRules` come from the study (``tools/not_a_cry_study.py``) and live in the detector's
manifest entry: a distance means something only in the space of the weights that made it.

Example:
    >>> home = HomeSounds(np.array([[1.0, 0.0]]), HoldRules(max_distance=0.1, never_above=0.99, announce_after_s=20))
    >>> round(home.distance(np.array([0.9, 0.1])), 3), home.distance(np.array([0.0, 1.0]))
    (0.006, 1.0)
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from monitor.core.events import CryEvent, CryStateMachine


@dataclass(frozen=True)
class HoldRules:
    max_distance: float  # cosine distance within which a detection is "the same sound"
    never_above: float  # a confirming score this high is never held: only real cries reached it in the study
    announce_after_s: float  # a held detection still going on after this long is announced

    @classmethod
    def from_dict(cls, data: dict) -> HoldRules:
        return cls(float(data["max_distance"]), float(data["never_above"]), float(data["announce_after_s"]))


def normalised(x: np.ndarray) -> np.ndarray:
    """Rows (or a vector) scaled to unit length; a zero row stays zero."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


class HomeSounds:
    """The home's marked sounds (N, D), immutable: a change makes a new object, so the inference thread never
    sees one half-updated."""

    def __init__(self, embeddings: np.ndarray, rules: HoldRules) -> None:
        self.embeddings = normalised(np.atleast_2d(np.asarray(embeddings, dtype=np.float64)))
        self.rules = rules

    def __len__(self) -> int:
        return len(self.embeddings)

    def distance(self, embedding: np.ndarray) -> float:
        if not len(self.embeddings) or np.shape(embedding)[-1] != self.embeddings.shape[1]:
            return math.inf  # none, or marks of another size (another model's, a damaged file): never a match
        return float(1.0 - np.max(self.embeddings @ normalised(embedding)))


@dataclass(frozen=True)
class Hold:
    id: str
    t: float  # audio time of the decision
    outcome: str  # "held" | "announced" | "suppressed"
    distance: float  # to the nearest marked sound, when held
    held_s: float = 0.0  # how long it was held (announced, suppressed)
    why: str | None = None  # announced: "score" | "sound_changed" | "duration"


class HoldBack:
    """Between the state machine and the outputs: remembers the recent windows' scores and embeddings, gives each
    ``cry_start`` its detection embedding, and holds the ones close to :attr:`home` (None: nothing is held).
    ``of_windows``: the state machine's confirmation length (:meth:`resize` when it changes)."""

    def __init__(self, of_windows: int, home: HomeSounds | None = None) -> None:
        self.home = home
        self._recent: deque[tuple[float, np.ndarray | None]] = deque(maxlen=of_windows)
        self._held: tuple[CryEvent, float, float] | None = None  # (the start, distance, when its episode began)
        self._episode: tuple[float, float] | None = None  # (when, last suppressed end) of the held sound's bouts

    def resize(self, of_windows: int) -> None:
        self._recent = deque(self._recent, maxlen=of_windows)

    def forget_recent(self) -> None:
        """After a pause: old windows neither confirm nor describe a new start."""
        self._recent.clear()

    def detection_embedding(self, start_threshold: float) -> np.ndarray | None:
        confirming = [e for s, e in self._recent if s >= start_threshold and e is not None]
        return normalised(np.mean(normalised(np.stack(confirming)), axis=0)) if confirming else None

    def step(self, t: float, score: float, embedding: np.ndarray | None, start_threshold: float,
             events: list[CryEvent]) -> tuple[list[CryEvent], list[Hold]]:
        """One window's score and embedding, and the events the state machine decided at it → the events to
        announce, and the notes. A held detection is checked for release first, so a window that both ends it
        and calls for its announcement announces it."""
        self._recent.append((score, embedding))
        released, notes = [], []
        if self._held is not None and not any(e.type == "cry_start" for e in events):
            released, notes = self._release(t, score, start_threshold)
        out, more = self._filter(t, start_threshold, events)
        return [*released, *out], [*notes, *more]

    def decide(self, machine: CryStateMachine, t: float, score: float,
               embedding: np.ndarray | None) -> tuple[list[CryEvent], list[Hold]]:
        """One window through ``machine`` and then :meth:`step`: what the pipeline (and a replay of cached scores)
        does at every window. A suppressed detection leaves the machine no cool-down."""
        out, notes = self.step(t, score, embedding, machine.config.start_threshold, machine.update(t, score))
        if any(note.outcome == "suppressed" for note in notes):
            machine.forget_cooldown()
        return out, notes

    def close(self, t: float, events: list[CryEvent]) -> tuple[list[CryEvent], list[Hold]]:
        """The events of a close (shutdown, pause): a held detection ends unannounced, as ``dropped`` (not a
        suppression: nobody heard how it would have gone on)."""
        return self._filter(t, math.inf, events, closing=True)

    def _filter(self, t: float, start_threshold: float, events: list[CryEvent],
                closing: bool = False) -> tuple[list[CryEvent], list[Hold]]:
        out, notes = [], []
        for event in events:
            if event.type == "cry_start":
                embedding = self.detection_embedding(start_threshold)
                event = dataclasses.replace(event, embedding=None if embedding is None else tuple(embedding.tolist()))
                distance = self.home.distance(embedding) if self.home is not None and embedding is not None else math.inf
                peak = max((s for s, _ in self._recent if s >= start_threshold), default=0.0)
                if (self.home is not None and distance <= self.home.rules.max_distance
                        and peak < self.home.rules.never_above):
                    since = self._episode_start(t)
                    self._held = (event, distance, since)
                    notes.append(Hold(event.id, t, "held", round(distance, 4), round(t - since, 3)))
                    continue
            elif event.ended_by == "max_duration":
                self._recent.clear()  # as the state machine does: a restart needs fresh confirmation
            if self._held is not None and event.id == self._held[0].id:  # the held detection ended
                start, distance, since = self._held
                self._held = None
                if event.ended_by == "max_duration":  # a detection this long is announced, however it sounds
                    out += [dataclasses.replace(start, t=t), event]
                    notes.append(Hold(event.id, t, "announced", round(distance, 4), round(t - since, 3), "duration"))
                    continue
                outcome = "dropped" if closing else "suppressed"
                notes.append(Hold(event.id, t, outcome, round(distance, 4), round(t - since, 3)))
                if outcome == "suppressed":
                    self._episode = (since, t)
                continue
            out.append(event)
        return out, notes

    def _episode_start(self, t: float) -> float:
        """When the held sound began: a detection that starts within ``announce_after_s`` of a suppressed one
        continues its episode (a cry in bouts, each shorter than ``announce_after_s``, is still announced once the
        bouts together last that long); else now."""
        episode, home = self._episode, self.home
        if episode is not None and home is not None and t - episode[1] <= home.rules.announce_after_s:
            return episode[0]
        return t

    def _release(self, t: float, score: float, start_threshold: float) -> tuple[list[CryEvent], list[Hold]]:
        start, distance, since = self._held
        rules = self.home.rules if self.home is not None else None
        why = None
        if rules is None:
            why = "sound_changed"  # the marks were forgotten meanwhile
        elif score >= rules.never_above:
            why = "score"
        elif t - since >= rules.announce_after_s:
            why = "duration"
        elif score >= start_threshold:
            embedding = self.detection_embedding(start_threshold)
            if embedding is not None and self.home.distance(embedding) > rules.max_distance:
                why = "sound_changed"
        if why is None:
            return [], []
        self._held = None
        self._episode = None
        return [dataclasses.replace(start, t=t)], [Hold(start.id, t, "announced", round(distance, 4),
                                                        round(t - since, 3), why)]
