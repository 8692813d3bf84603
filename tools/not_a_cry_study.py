#!/usr/bin/env python3
"""``python tools/not_a_cry_study.py`` = ``python -m monitor.training.not_a_cry_study`` (the code and its documentation are there)."""

import sys

from monitor.training.not_a_cry_study import main

if __name__ == "__main__":
    sys.exit(main())
