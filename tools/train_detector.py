#!/usr/bin/env python3
"""``python tools/train_detector.py`` = ``python -m monitor.training.detector`` (the code and its documentation are there)."""

import sys

from monitor.training.detector import main

if __name__ == "__main__":
    sys.exit(main())
