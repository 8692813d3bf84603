"""Synthetic speech from espeak-ng: the one helper behind the detector's babble bank and the synthetic scenes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from monitor.audio.files import read_file


def espeak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """One utterance at 16 kHz; exits with a one-line message when espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed (apt-get install -y espeak-ng; tools/setup.sh installs it)")
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
                       check=True, capture_output=True)
        return read_file(wav)
