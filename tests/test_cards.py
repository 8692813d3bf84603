"""The model cards, rendered from fixed inputs (no training, no measurement), are byte for byte the files in
tests/cards/. Those files were rendered by the card code as it was before the card text left Python for
templates, so they hold every card to its old text; a deliberate change to a card's text updates its file here.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from monitor.core.home_sounds import HoldRules
from monitor.training import detector_card, material
from monitor.training.cards import render
from monitor.training.operating_point import SweepReport

GOLDEN = Path(__file__).resolve().parent / "cards"
SHA = "ab" * 32
SMALL_SHA = "cd" * 32

SWEEP = SweepReport(
    goals="| goal | target | measured |\n|---|---|---|\n| cries found | ≥ 90 % | 57/66 |",
    hops="| hop | cries |\n|---|---|\n| 0.08 | 57/66 |\n| 0.24 | 56/66 |",
    choices="| preset | hop (s) | start threshold | N of M | rule met |\n|---|---|---|---|---|\n| medium | 0.24 | 0.9 | 2 of 3 | yes |",
    report="| preset | cries |\n|---|---|\n| **medium** | 57/66 |",
    side_by_side="| model | medium preset |\n|---|---|\n| this (4c0674269b8d) | 0.9, 2 of 3, hop 0.24 s |",
    categories="| preset | false alarms |\n|---|---|\n| medium | music 2 (0.92/h) · speech 1 (0.46/h) |",
    synthetic="| preset | cries |\n|---|---|\n| **medium** | 30/31 |",
    set_minutes={"calibration": 141, "report": 152, "synthetic": 60},
    hop=0.24, medium_f1=0.785, medium_recall=0.864, medium_cry_free_fa_h=4.15,
)


def held_out(fired: int, peaks: list[float], detected: int = 18, missed: tuple = ("cry/val/02ead89b.wav",)) -> dict:
    """Measurements of one model as the detector's ``evaluate`` returns them."""
    return {
        "model": "4c0674269b8d",
        "window": {"windows": 600, "positives": 296, "roc_auc": 0.98765,
                   "at_0.5": {"threshold": 0.5, "precision": 0.9012, "recall": 0.8513, "f1": 0.8755},
                   "at_start_threshold": {"threshold": 0.95, "precision": 0.9734, "recall": 0.6081, "f1": 0.7486}},
        "negatives": {"vocal": {"clips": 40, "fired": fired, "fired_paths": [], "laughs": 4, "laughs_fired": 1,
                                "peaks": peaks},
                      "animal": {"clips": 12, "fired": 1, "fired_paths": ["notcry/sfx/tuxpaint/cat/blackcat.ogg"],
                                 "laughs": 0, "laughs_fired": 0, "peaks": [0.2, 0.97]}},
        "cries": {"clips": 20, "detected": detected, "missed": list(missed), "latency_median_s": 1.2345,
                  "latency_p95_s": 5.678},
    }


TRAIN_LOG = {"argv": ["--steps", "300"], "minutes": 26.4, "init": "af0651e:models/detector.pt",
             "arch": "cnn10-stream", "kwargs": {}, "teacher": None, "distil_weight": 0.5, "temperature": 2.0,
             "laugh_negatives": ["chopped", "voiced"], "steps": 300, "batch": 32, "lr": 0.0003,
             "history": [{"step": 100, "threshold": 0.5, "precision": 0.8, "recall": 0.7, "f1": 0.7467},
                         {"step": 300, "threshold": 0.5, "precision": 0.9012, "recall": 0.8513, "f1": 0.8755}]}
STUDENT_LOG = {**TRAIN_LOG, "argv": ["--out", "models/detector-small.pt", "--widths", "32", "64", "128", "256",
                                     "--teacher", "models/detector.pt", "--init", "teacher"],
               "init": None, "kwargs": {"widths": [32, 64, 128, 256]}, "teacher": "models/detector.pt",
               "laugh_negatives": [], "steps": 600}
del STUDENT_LOG["lr"]  # a log from before the learning rate was recorded

CLIPS = [{"category": category, "split": split, "label": "cry" if category == "cry" else "notcry",
          "group": f"{category}-{split}-{i}", "length": length}
         for category, split, i, length in (("cry", "train", 0, 112000), ("cry", "val", 1, 64000),
                                            ("music", "train", 2, 9600000), ("music", "val", 3, 2880000),
                                            ("vocal", "train", 4, 16000), ("vocal", "val", 5, 24000))]

MANIFEST = {
    "detector.pt": {"arch": "cnn10-stream", "kwargs": {}, "sha256": SHA, "hop_seconds": 0.24,
                    "operating_point": {k: {"start_threshold": t, "confirm_windows": 2, "of_windows": 3}
                                        for k, t in (("low", 0.95), ("medium", 0.9), ("high", 0.8))}},
    "detector.onnx": {"arch": "onnx-frame-step", "sha256": "ef" * 32,
                      "kwargs": {"exported_from": "detector.pt", "source_sha256": SHA}},
    "detector-small.pt": {"arch": "cnn10-stream", "kwargs": {"widths": [32, 64, 128, 256]}, "sha256": SMALL_SHA,
                          "hop_seconds": 0.08},
}

DETECTOR_CASES = {  # golden file: (model, its training log, the ablation rows measured beside it)
    "detector.md": ("detector.pt", TRAIN_LOG, {"chopped + voiced (shipped)": held_out(3, [0.1, 0.6, 0.3, 0.9]),
                                               "none (real adult laughs only)": held_out(5, [0.2, 0.7, 0.5, 0.4])}),
    "detector-no-ablation.md": ("detector.pt", TRAIN_LOG, {"chopped + voiced (shipped)": held_out(3, [0.1, 0.6])}),
    "detector-small.md": ("detector-small.pt", STUDENT_LOG, {" (shipped)": held_out(2, [0.3, 0.5], 20, ())}),
}


@pytest.mark.parametrize("golden", DETECTOR_CASES)
def test_detector_card(golden, tmp_path, monkeypatch):
    name, log, ablations = DETECTOR_CASES[golden]
    models, cache = tmp_path / "models", tmp_path / "cache"
    models.mkdir()
    cache.mkdir()
    (models / "manifest.json").write_text(json.dumps(MANIFEST))
    np.save(cache / "audio.npy", np.zeros(16, np.float16))
    (cache / "clips.json").write_text(json.dumps(CLIPS))
    (cache / f"train_log-{Path(name).stem}.json").write_text(json.dumps(log))
    monkeypatch.setattr(material, "CACHE", cache)
    monkeypatch.setattr(detector_card, "MODELS_DIR", models)
    args = argparse.Namespace(out=models / name, data=tmp_path / "data", ablation=None, mine_every=150, mine_keep=128,
                              mine_candidates=1024)
    metrics = next(iter(ablations.values()))
    detector_card.write_card(metrics, args, SWEEP, ablations)
    assert (models / name).with_suffix(".md").read_text() == (GOLDEN / golden).read_text()


INT8 = {"file": "detector-int8.onnx", "sha": "12" * 32, "source": "detector.pt", "source_sha": SHA, "mb": 5.04321,
        "fp32_mb": 19.8765, "error": 0.0234, "check": "music.ogg", "sweep": SWEEP}


def test_int8_card():
    assert render("detector-int8.md", **INT8) == (GOLDEN / "detector-int8.md").read_text()


SWEEP_CARD = {"model": "detector-small.pt", "model_id": "4c0674269b8d", "parts": SWEEP, "hops": "0.08 and 0.24",
              "minutes": {"calibration": 140.6, "report": 151.4, "synthetic": 60.2},
              "events": argparse.Namespace(end_threshold=0.5, end_hold_seconds=3.0, cooldown_seconds=10.0),
              "header": "| hop (s) | start threshold | N of M | cries found |\n|---|---|---|---|",
              "sweep": "| 0.08 | 0.9 | 2 of 3 | 57/66 |\n| 0.24 | 0.95 | 3 of 4 | 50/66 |"}
SOUNDSCAPES = {"model": "detector-small.pt", "model_id": "4c0674269b8d", "baseline": "af0651e",
               "old_id": "0123456789ab", "medium_table": "scene  min  cries\nall    152  66",
               "synthetic_table": "scene  min  cries\nall    60  31", "old_table": "scene  min  cries\nall    152  71"}


def test_operating_point_and_soundscape_cards():
    assert render("operating-point.md", **SWEEP_CARD) == (GOLDEN / "detector-small-operating-point.md").read_text()
    assert render("soundscapes.md", **SOUNDSCAPES) == (GOLDEN / "detector-small-soundscapes.md").read_text()


NOT_A_CRY = {"model": "detector-yamnet-lwf-int8.onnx", "sha": "abababababab", "hop": 0.24, "on": "no",
             "rules": HoldRules(0.1234, 0.97, 6.5), "homes": 2, "minutes": 40.0, "residents": 3, "sources": 12,
             "why": {"false_alarms": 45, "alarm_peak_max": 0.965, "alarm_duration_max_s": 6.2,
                     "alarm_to_nearest_cry": "median 0.030, 5th percentile 0.010 (45)",
                     "same_source_alarms": "median 0.060, 5th percentile 0.020 (12)"},
             "tried": "0.3: medium 70/85; 0.1234: medium 85/85",
             "tables": "| medium, 1 | 3.1 → 2.0 | 0 |\n| medium, 3 | 3.1 → 0.5 | 0 |",
             "home_list": "- home-1 (cat, tv)\n- home-2 (dog)", "worst": "| medium | 12 | 57/66 | 55/66 |"}


def test_not_a_cry_study_card():
    assert render("not-a-cry-study.md", **NOT_A_CRY) == (GOLDEN / "not-a-cry-study.md").read_text()


def template_fields(template: str) -> dict:
    """Every field of a card template: a number where the template formats one, else a marker string."""
    import string

    return {name: 12.345 if spec else f"<{name}>" for _, name, spec, _ in
            string.Formatter().parse(render_raw(template)) if name}


def render_raw(template: str) -> str:
    from importlib.resources import files

    return files("monitor.training.cards").joinpath(template).read_text(encoding="utf-8")


def test_classifier_card():
    # golden rendered from the card text as it lived in reason_table.py, before it became a template
    assert render("classifier.md", **template_fields("classifier.md")) == (GOLDEN / "classifier.md").read_text()


def test_classifier_adaptation_section():
    from monitor.training.reason_table import ADAPTATION_HEADING

    rendered = ADAPTATION_HEADING + render("classifier-adaptation.md", **template_fields("classifier-adaptation.md"))
    assert rendered == (GOLDEN / "classifier-adaptation.md").read_text()
