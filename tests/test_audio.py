import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from monitor.audio import AudioFileError, StreamResampler, iter_file, read_file


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_streaming_resampler_matches_whole_signal_resampling(rate):
    rng = np.random.default_rng(rate)
    x = rng.standard_normal(rate * 2).astype(np.float32)
    expected = AF.resample(torch.from_numpy(x), rate, 16000).numpy()
    resampler = StreamResampler(rate)
    pieces, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 3000))
        pieces.append(resampler.process(x[i : i + n]))
        i += n
    pieces.append(resampler.flush())
    got = np.concatenate(pieces)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_odd_rate_stereo_file_becomes_16k_mono_with_the_tone_kept(tmp_path):
    t = np.arange(44100 * 2) / 44100
    left = 0.5 * np.sin(2 * np.pi * 1000 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, left], axis=1), 44100)
    audio = read_file(path)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size == 32000
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / audio.size - 1000) < 2


def test_ogg_and_flac_decode(tmp_path):
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    for ext in ("flac", "ogg"):
        path = tmp_path / f"a.{ext}"
        sf.write(path, tone, 8000)
        assert read_file(path).size == 16000


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable audio file"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt garbage garbage", "not a readable audio file"),
        (b"this is a text file, not audio\n" * 10, "not a readable audio file"),
    ],
)
def test_corrupt_files_give_a_clear_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFileError) as info:
        read_file(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000)
    with pytest.raises(AudioFileError, match="contains no audio"):
        list(iter_file(empty))
    with pytest.raises(AudioFileError, match="no such file"):
        read_file(tmp_path / "nope.wav")
