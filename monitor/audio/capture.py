"""Microphone capture through sounddevice/PortAudio, delivered to asyncio as 16 kHz mono float32 chunks.

The PortAudio callback runs on the audio thread: it only copies the block and hands it to the event loop with
``call_soon_threadsafe`` (never blocks, never touches the model). The loop side down-mixes and resamples
(:class:`~monitor.audio.files.StreamResampler`). Overflows are counted and logged. A device that fails to open, or
that stops delivering audio (unplugged USB microphone, PulseAudio restart), is reopened with exponential
backoff instead of crashing the daemon.

``sounddevice`` is imported lazily: without PortAudio the package still imports, and replay still works.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import structlog

from monitor import SAMPLE_RATE
from monitor.audio.files import StreamResampler, to_mono
from monitor.config import AudioConfig

log = structlog.get_logger(__name__)

STALL_SECONDS = 3.0  # no audio for this long from an open stream = the device is gone


class CaptureError(Exception):
    """The audio system or device cannot be used; the message says why."""


def import_sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # PortAudio missing
        raise CaptureError(f"PortAudio is not available ({exc}); install libportaudio2") from None
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_rate: float
    is_default: bool


def list_input_devices() -> list[InputDevice]:
    sd = import_sounddevice()
    default = sd.default.device[0] if sd.default.device else -1
    return [InputDevice(i, d["name"], d["max_input_channels"], d["default_samplerate"], i == default)
            for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def _stream_settings(sd, config: AudioConfig) -> tuple[int | str | None, int, int]:
    """Pick device, rate and channel count: 16 kHz mono when the device accepts it (saves resampling)."""
    try:
        info = sd.query_devices(config.device, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        raise CaptureError(f"audio.device {config.device!r}: {exc}") from None
    # Many ALSA hw: devices only open with 2 channels: try mono, then what the device has (down-mixed later).
    channel_options = [config.channels] if config.channels else [1, int(info["max_input_channels"])]
    rate_options = [config.sample_rate] if config.sample_rate else [SAMPLE_RATE, int(info["default_samplerate"])]
    for rate in rate_options:
        for channels in channel_options:
            try:
                sd.check_input_settings(device=config.device, samplerate=rate, channels=channels)
                return config.device, rate, channels
            except (ValueError, sd.PortAudioError):
                continue
    return config.device, rate_options[-1], channel_options[-1]  # let opening report the device's own error


class MicCapture:
    """Async iterator of 16 kHz mono chunks from a microphone, reopening the device when it fails."""

    def __init__(self, config: AudioConfig) -> None:
        self.config = config
        self.overflows = 0
        self._stopping = asyncio.Event()
        self._reopen = False
        self._queue: asyncio.Queue | None = None

    def stop(self) -> None:
        self._stopping.set()

    @property
    def backlog_seconds(self) -> float:
        """Audio captured but not yet processed: grows when inference cannot keep up with real time."""
        return self._queue.qsize() * self.config.block_seconds if self._queue is not None else 0.0

    def diagnostics(self) -> dict:
        """Blocks the device dropped (overflows) and the audio waiting to be processed, for the diagnostics."""
        return {"dropped_frames": self.overflows, "backlog_s": round(self.backlog_seconds, 2)}

    def reopen(self) -> None:
        """Close and reopen the device (it delivers a flat line): takes effect at the next block."""
        self._reopen = True

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        sd = import_sounddevice()
        loop = asyncio.get_running_loop()
        backoff = 1.0
        while not self._stopping.is_set():
            queue: asyncio.Queue[np.ndarray] = asyncio.Queue()
            self._queue = queue

            def callback(indata, frames, time_info, status) -> None:
                if status.input_overflow:
                    self.overflows += 1
                loop.call_soon_threadsafe(queue.put_nowait, indata.copy())

            try:
                device, rate, channels = _stream_settings(sd, self.config)
                resampler = StreamResampler(rate)
                stream = sd.InputStream(device=device, samplerate=rate, channels=channels, dtype="float32",
                                        blocksize=int(rate * self.config.block_seconds), callback=callback)
                stream.start()
            except (CaptureError, sd.PortAudioError, ValueError) as exc:
                log.error("capture_open_failed", device=self.config.device, error=str(exc), retry_in_s=backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.config.reopen_backoff_max_seconds)
                continue
            log.info("capture_started", device=device, sample_rate=rate, channels=channels)
            reported_overflows = self.overflows
            try:
                while not self._stopping.is_set():
                    try:
                        block = await asyncio.wait_for(queue.get(), timeout=STALL_SECONDS)
                    except asyncio.TimeoutError:
                        log.error("capture_stalled", seconds=STALL_SECONDS, detail="reopening the device")
                        break
                    if self._reopen:
                        self._reopen = False
                        log.warning("capture_reopening", device=device)
                        break
                    backoff = 1.0
                    if self.overflows != reported_overflows:
                        log.warning("capture_overflow", total=self.overflows)
                        reported_overflows = self.overflows
                    out = resampler.process(to_mono(block))
                    if out.size:
                        yield out
            finally:
                await asyncio.to_thread(_close, stream)
            if not self._stopping.is_set():
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.config.reopen_backoff_max_seconds)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass


def _close(stream) -> None:
    try:
        stream.abort()
        stream.close()
    except Exception as exc:  # closing a vanished device can fail in many PortAudio ways; it is gone either way
        log.warning("capture_close_failed", error=str(exc))


async def file_chunks(path: str, block_seconds: float, realtime: bool = True) -> AsyncIterator[np.ndarray]:
    """A file as if it were a microphone: 16 kHz chunks paced in real time (``run --input FILE``)."""
    from monitor.audio.files import iter_file

    started = time.monotonic()
    sent = 0
    size = int(SAMPLE_RATE * block_seconds)
    for block in iter_file(path, block_seconds):
        for begin in range(0, block.size, size):
            chunk = block[begin : begin + size]
            sent += chunk.size
            if realtime:  # a microphone hands over a block only once it has all been heard
                await asyncio.sleep(max(0.0, started + sent / SAMPLE_RATE - time.monotonic()))
            yield chunk
