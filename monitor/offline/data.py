"""The training manifest (../shared/data/manifest.csv) and its leakage-free split by ``group``.

Groups, not files, are split: one Donate-a-cry app install (≈ one baby) uploads many clips, and the cleaned set
is derived from the raw uploads of the same install. The split is a pure function of the group name (sha256), so
every tool (training, evaluation, tests) agrees on it without a stored list, and adding files never moves a group.
Within each source *and category* (:func:`category`), the ``val_fraction`` of groups with the smallest hashes
are held out (at least one group when there are two or more), so every kind of sound has held-out recordings:
whole languages, voice packs, music tracks and effects. A source with a single group (the Asterisk prompts: one
speaker) cannot be split by group and stays in training.

Example:
    >>> category(Clip(Path("notcry/sfx/gcompris/cat.ogg"), "notcry", "", "gc:cat", "gcompris", 1.0))
    'animal'
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str  # "cry" | "notcry"
    reason: str
    group: str
    source: str
    duration_s: float
    sex: str = ""  # Donate-a-cry tags: m | f, and the age band (README of the data); empty elsewhere
    age: str = ""


def read_clips(data_dir: Path) -> list[Clip]:
    """Every clip listed in ``data_dir/manifest.csv`` (the models' own manifest is
    :func:`monitor.inference.weights.read_manifest`)."""
    with open(data_dir / "manifest.csv", newline="") as handle:
        return [
            Clip(data_dir / row["path"], row["label"], row["reason"], row["group"], row["source"],
                 float(row["duration_s"]), row["sex"], row["age"])
            for row in csv.DictReader(handle)
        ]


# Effects in notcry/sfx/ that are animals (the file stem, lower case); every other effect is household or object
ANIMALS = frozenset("""
badger bat_left bear beaver bee bison blackbird blackcat bull camel caribou cat chickens chimp cow cow_white crow
cuckoo deer doe dog dolphin donkey drake dromedary duck elephant ferret fox frog gander goat gorilla grasshopper
hen heron_greatblue_flying hippopotamus hornet horse koala lark lion lrbark_1_la_cut lrbark_3_la_cut
lrfrogsinpondduringstormlacut mosquito mountaingoat mouse orca owl penguin pig pig_golden pig_golden2 quetzal
rabbit ram rooster sea_lion seagull sheep sheep_lamb squirrel tiger tucan turkey vulture whale zebra
""".split())
CATEGORIES = ("cry", "speech", "vocal", "music", "animal", "household", "noise")


def category(clip: Clip) -> str:
    """The kind of sound: ``cry``, ``speech``, ``vocal`` (non-speech adult vocalisation: shouts, laughs, coughs),
    ``music``, ``animal``, ``household`` (household and other sound effects, and recorded household noise) or
    ``noise`` (stationary noise). Training samples negatives per category; evaluation blames false alarms on it."""
    parts = clip.path.parts
    kind = parts[parts.index("notcry") + 1] if "notcry" in parts else "cry"
    if kind == "sfx":
        return "animal" if clip.path.stem.lower() in ANIMALS else "household"
    if kind == "noise":
        return "noise" if "noise" in clip.path.stem.lower() else "household"
    return kind


def _group_key(group: str) -> str:
    return hashlib.sha256(group.encode()).hexdigest()


def split_groups(clips: list[Clip], val_fraction: float = 0.2) -> dict[str, str]:
    """Map every group to ``"train"`` or ``"val"``. Donate-a-cry cleaned and raw share group ids, so they are
    pooled into one source here: a baby is on one side of the split in both sets."""
    by_source: dict[tuple[str, str], set[str]] = defaultdict(set)
    for clip in clips:
        source = "donateacry" if clip.source.startswith("donateacry") else clip.source
        by_source[source, category(clip)].add(clip.group)
    assignment: dict[str, str] = {}
    for groups in by_source.values():
        ordered = sorted(groups, key=_group_key)
        n_val = 0 if len(ordered) < 2 else max(1, round(val_fraction * len(ordered)))
        for i, group in enumerate(ordered):
            assignment[group] = "val" if i < n_val else "train"
    return assignment
