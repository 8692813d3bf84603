"""The daemon and its outputs: MQTT (protocol, publisher, outbox, Home Assistant discovery), clips, systemd
notify and logging."""
