#!/usr/bin/env python3
from monitor.training.yamnet_import import main

if __name__ == "__main__":
    main()
