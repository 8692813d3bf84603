"""Training and calibration, run as ``python -m monitor.training.<module>`` (or ``python tools/<script>.py``,
the same): the detector, its operating points and exports, the reason classifier and its table, and the
soundscapes they are measured on. torch is needed here; nothing at run time imports this package."""
