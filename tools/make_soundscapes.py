#!/usr/bin/env python3
"""``python tools/make_soundscapes.py`` = ``python -m monitor.training.soundscapes`` (the code and its documentation are there)."""

import sys

from monitor.training.soundscapes import main

if __name__ == "__main__":
    sys.exit(main())
