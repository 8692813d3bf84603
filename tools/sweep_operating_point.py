#!/usr/bin/env python3
"""``python tools/sweep_operating_point.py`` = ``python -m monitor.training.operating_point`` (the code and its documentation are there)."""

from monitor.training.operating_point import main

if __name__ == "__main__":
    main()  # returns what it wrote (for the callers that quote it), not an exit status
