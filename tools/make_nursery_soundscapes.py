#!/usr/bin/env python3
"""``python tools/make_nursery_soundscapes.py`` = ``python -m monitor.training.nursery_soundscapes`` (the code and its documentation are there)."""

import sys

from monitor.training.nursery_soundscapes import main

if __name__ == "__main__":
    sys.exit(main())
