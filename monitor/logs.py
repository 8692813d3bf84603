"""structlog setup: JSON lines when stderr is not a terminal (journald, files), readable text on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from monitor.config import LoggingConfig


def configure_logging(config: LoggingConfig) -> None:
    as_json = config.format == "json" or (config.format == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, config.level.upper())),
        # sys.stderr looked up at each use, not bound once: it may be replaced (test capture, redirection)
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
