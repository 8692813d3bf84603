"""The *Last cry* picture of a real held-out cry, drawn by the sink the daemon and replay use."""

import io
import json
import signal
import struct
import time
import zlib

import numpy as np
from PIL import Image

from daemon_helpers import DaemonProcess, publish, write_config
from monitor.config import Config
from monitor.core.events import CryEvent
from monitor.driver import Emitted
from monitor.inference.detect import CryDetector
from monitor.offline.replay import Collector, replay_file
from monitor.service import picture
from monitor.service.picture import BANDS, SCORE, STRIP, WIDTH, CryPictureSink


def test_a_real_cry_is_drawn_as_a_small_png_that_decodes(cry_then_quiet):
    pictures: list[bytes] = []
    collector = Collector()
    replay_file(str(cry_then_quiet), Config(), CryDetector(Config().detector),
                [collector, CryPictureSink(Config().classifier.lookback_seconds, pictures.append)])
    assert [e["type"] for e in collector.events] == ["cry_start", "cry_end"] and len(pictures) == 1
    png = pictures[0]
    assert 2_000 < len(png) < 40_000  # small enough to publish retained and re-send at every connect

    image = Image.open(io.BytesIO(png))  # an independent decoder
    image.load()
    assert (image.format, image.mode, image.size) == ("PNG", "P", (WIDTH, BANDS + 2 * (STRIP + 1)))
    pixels = np.asarray(image)
    # every chunk's CRC checks out (Pillow checks only some), and the only IDAT inflates to the rows
    chunks, offset = [], 8
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        data = png[offset + 8 : offset + 8 + length]
        assert struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])[0] == zlib.crc32(kind + data)
        chunks.append((kind, data))
        offset += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"PLTE", b"IDAT", b"IEND"]
    assert len(zlib.decompress(chunks[2][1])) == pixels.shape[0] * (WIDTH + 1)

    # what it shows, from the lookback before cry_start to cry_end: the cry brighter than the quiet room that
    # follows it (the end hold), its confirming scores high in the score strip, the quiet end's low
    start, end = collector.events
    t0 = start["t"] - Config().classifier.lookback_seconds
    column = (lambda t: int((t - t0) / (end["t"] - t0) * WIDTH))
    spectrogram = pixels[:BANDS].astype(float)
    assert spectrogram[:, column(start["t"]) : column(8.0)].mean() > spectrogram[:, column(end["t"] - 3):].mean() + 40
    score_lit = (pixels[BANDS + 1 : BANDS + 1 + STRIP] == SCORE).sum(axis=0)  # per column: the score × STRIP
    assert score_lit[column(start["t"]) + 1] > 0.8 * STRIP and score_lit[-1] < 0.5 * STRIP


def test_a_picture_is_drawn_for_a_cry_cut_short_by_the_end_of_the_input():
    """close() draws a cry whose end came with no chunk after it (the driver stopping)."""
    pictures: list[bytes] = []
    sink = CryPictureSink(1.5, pictures.append)
    sink.audio(np.zeros(16000, np.float32))
    sink.cry_event(Emitted(CryEvent("cry_start", 1.0, "a", 0.95), 0.0))
    sink.audio(np.ones(8000, np.float32))
    sink.cry_event(Emitted(CryEvent("cry_end", 2.0, "a", 0.99, 1.0, "quiet"), 0.0))  # later than the audio seen
    assert pictures == []
    sink.close()
    assert len(pictures) == 1 and Image.open(io.BytesIO(pictures[0])).size[0] == WIDTH


def test_memory_stays_bounded_for_a_cry_of_any_length():
    spectrum = picture.Spectrum()
    for _ in range(200):  # 200 × 10 s
        spectrum.add(np.random.default_rng(0).standard_normal(160_000).astype(np.float32))
    assert spectrum.sums.shape == (2 * WIDTH, BANDS) and spectrum.seconds > 1999
    assert spectrum.columns().shape == (WIDTH, BANDS)


def test_with_clips_picture_off_nothing_drawn_from_the_audio_is_published(broker, subscriber_factory,
                                                                        cry_then_quiet, tmp_path):
    """``clips.picture: false``: no *Last cry* entity, no picture at cry_end, and the one an earlier run published
    is deleted from the broker."""
    publish(broker.port, "crymonitor/private/last_cry_picture", b"\x89PNG from an earlier run", retain=True)
    sub = subscriber_factory(broker.port, "#")
    config = write_config(tmp_path / "c.yaml", broker.port, "private", "clips:\n  picture: false\n")
    daemon = DaemonProcess(config, "--input", str(cry_then_quiet))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_end" for p in sub.payloads("event")), timeout=60)
        time.sleep(1.0)  # a picture would follow the cry_end at once
    finally:
        daemon.stop(signal.SIGTERM)
    assert sub.payloads("last_cry_picture") == ["\ufffdPNG from an earlier run", ""]  # retained, then deleted
    assert "last_cry" not in json.loads(sub.payloads("config")[-1])["cmps"]
