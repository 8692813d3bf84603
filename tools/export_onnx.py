#!/usr/bin/env python3
"""``python tools/export_onnx.py`` = ``python -m monitor.training.export_onnx`` (the code and its documentation are there)."""

import sys

from monitor.training.export_onnx import main

if __name__ == "__main__":
    sys.exit(main())
