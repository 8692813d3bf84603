"""The running config: the one holder of the daemon's :class:`~monitor.config.Config` as it started, with what
reloads changed (:meth:`~monitor.service.commands.Controller.reload` replaces :attr:`RunningConfig.current`).
Whatever needs a setting a reload can change reads it here when it needs it, never from a copy of its own."""

from __future__ import annotations

from monitor.config import Config


class RunningConfig:
    def __init__(self, config: Config) -> None:
        self.current = config
