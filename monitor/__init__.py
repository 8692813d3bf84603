"""crymonitor: on-device baby cry monitor (capture → buffer → features → detect → events → publish)."""

__version__ = "0.1.0"

SAMPLE_RATE = 16_000
"""Every stage after capture works on 16 kHz mono float32 in [-1, 1]."""
