#!/usr/bin/env python3
"""``python tools/reason_table.py`` = ``python -m monitor.training.reason_table`` (the code and its documentation are there)."""

import sys

from monitor.training.reason_table import main

if __name__ == "__main__":
    sys.exit(main())
