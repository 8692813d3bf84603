#!/usr/bin/env python3
"""Thin wrapper: ``python tools/replay.py FILE...`` is ``crymonitor replay FILE...``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.cli import main  # noqa: E402

sys.exit(main(["replay", *sys.argv[1:]]))
