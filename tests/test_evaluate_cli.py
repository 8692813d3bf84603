"""``crymonitor evaluate`` (monitor/offline/evaluate_cli.py) end to end on a held-out cry."""

import json

import numpy as np
import soundfile as sf

from monitor.offline.evaluate_cli import main


def test_evaluate_needs_annotations_beside_the_audio(tmp_path, capsys):
    lone = tmp_path / "lone.wav"
    sf.write(lone, np.zeros(16000, np.float32), 16000)
    assert main([str(lone), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"crymonitor: error: {lone}: no annotations lone.csv") and "Traceback" not in err


def test_evaluate_end_to_end_on_a_held_out_cry(cry_then_quiet, tmp_path, capsys):
    folder = tmp_path / "set"
    folder.mkdir()
    audio = folder / "cry.wav"
    audio.write_bytes(cry_then_quiet.read_bytes())
    cry_seconds = sf.info(audio).duration - 9.0  # the fixture: 1 s quiet, the cry, 8 s quiet
    (folder / "cry.csv").write_text(f"onset_s,offset_s,label\n1.0,{1.0 + cry_seconds:.3f},cry\n")
    out = tmp_path / "report"
    assert main([str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "overall" in printed and "cry" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    overall = metrics["overall"]
    assert (overall["cries"], overall["recall"], overall["missed"]) == (1, 1.0, [])
    assert overall["precision"] == 1.0 and 0.0 < overall["latency_median_s"] < cry_seconds
    assert overall["window_auc"] > 0.8 and metrics["files"]["cry"]["f1"] == 1.0
    assert (out / "cry.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
