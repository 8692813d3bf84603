#!/usr/bin/env python3
"""``python tools/distil_cnn10.py`` = ``python -m monitor.training.distil_cnn10`` (the code and its documentation are there)."""

import sys

from monitor.training.distil_cnn10 import main

if __name__ == "__main__":
    sys.exit(main())
