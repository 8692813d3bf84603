#!/usr/bin/env python3
"""``python tools/compare_detectors.py`` = ``python -m monitor.training.detector_comparison`` (the code and its documentation are there)."""

from monitor.training.detector_comparison import main

if __name__ == "__main__":
    main()  # returns what it wrote (for the callers that quote it), not an exit status
