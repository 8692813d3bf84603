#!/usr/bin/env python3
"""Thin wrapper: ``python tools/evaluate.py AUDIO_OR_DIR...`` is ``crymonitor evaluate AUDIO_OR_DIR...``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.offline.evaluate_cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
