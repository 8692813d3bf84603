#!/usr/bin/env python3
"""``python tools/finetune_yamnet.py`` = ``python -m monitor.training.yamnet_finetune`` (the code and its documentation are there)."""

import sys

from monitor.training.yamnet_finetune import main

if __name__ == "__main__":
    sys.exit(main())
