"""The command line (monitor/cli.py): ``check-config``, ``classify`` and the dispatch to ``evaluate``."""

import json
import subprocess
import sys

from monitor.cli import main
from monitor.core.events import REASONS, UNCERTAIN


def test_cli_classify_prints_one_line_per_file_and_reports_bad_ones(cry_clip, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = subprocess.run([sys.executable, "-m", "monitor", "classify", str(cry_clip), str(corrupt), str(cry_clip)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(cry_clip)] * 2
    assert lines[0] == lines[1]  # deterministic
    assert set(lines[0]["probs"]) == set(REASONS) and lines[0]["reason"] in (*REASONS, UNCERTAIN)
    assert "corrupt.wav" in out.stderr and "Traceback" not in out.stderr


def test_check_config_cli_reports_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("events:\n  cooldown_seconds: -1\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crymonitor: error:") and "bad.yaml:2: events.cooldown_seconds" in err
    assert "Traceback" not in err
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read config" in capsys.readouterr().err
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("logging:\n  level: info # caf\xe9\n".encode("latin-1"))
    assert main(["check-config", str(latin1)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_crymonitor_cli_dispatches_evaluate(tmp_path, capsys):
    from monitor.cli import main

    audio = tmp_path / "orphan.wav"
    audio.write_bytes(b"")
    assert main(["evaluate", str(audio)]) == 2  # no annotations beside it: a clear error, not a traceback
    assert "crymonitor: error:" in capsys.readouterr().err
