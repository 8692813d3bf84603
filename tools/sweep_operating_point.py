#!/usr/bin/env python3
"""``python tools/sweep_operating_point.py`` = ``python -m monitor.training.operating_point`` (the code and its documentation are there)."""

import sys

from monitor.training.operating_point import main

if __name__ == "__main__":
    sys.exit(main())
