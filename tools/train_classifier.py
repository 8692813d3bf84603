#!/usr/bin/env python3
"""``python tools/train_classifier.py`` = ``python -m monitor.training.classifier`` (the code and its documentation are there)."""

import sys

from monitor.training.classifier import main

if __name__ == "__main__":
    sys.exit(main())
