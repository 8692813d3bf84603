#!/usr/bin/env python3
"""``python tools/compare_detectors.py`` = ``python -m monitor.training.detector_comparison`` (the code and its documentation are there)."""

import sys

from monitor.training.detector_comparison import main

if __name__ == "__main__":
    sys.exit(main())
