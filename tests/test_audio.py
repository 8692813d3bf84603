import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from monitor.audio.files import AudioFileError, StreamResampler, iter_file, read_file


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_streaming_resampler_equals_torchaudio_on_the_whole_signal(rate):
    """The training features were resampled by torchaudio; its float64 result is the reference (its float32
    kernel is itself 1e-4 off at 11,025 Hz)."""
    rng = np.random.default_rng(rate)
    x = rng.standard_normal(rate * 2).astype(np.float32)
    expected = AF.resample(torch.from_numpy(x.astype(np.float64)), rate, 16000).numpy()
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


@pytest.mark.parametrize("rate", [11127, 44101, 191999])
def test_rates_with_a_huge_common_multiple_keep_a_small_filter_and_the_tone(rate):
    resampler = StreamResampler(rate)
    assert resampler.filter_bytes < 16 * 2**20  # torchaudio's kernel for 44,101 Hz needs gigabytes
    t = np.arange(rate) / rate
    audio = np.concatenate([resampler.process(0.5 * np.sin(2 * np.pi * 1000 * t)), resampler.flush()])
    assert audio.size == 16000
    assert np.argmax(np.abs(np.fft.rfft(audio))) == 1000
    assert abs(np.sqrt(np.mean(audio[2000:-2000] ** 2)) - 0.5 / np.sqrt(2)) < 0.01


@pytest.mark.parametrize("rate", [0, 999, 384001, 2**31 - 1])
def test_a_sample_rate_outside_the_supported_range_is_a_clear_error(rate):
    with pytest.raises(ValueError, match="outside the supported 1000–384000 Hz"):
        StreamResampler(rate)


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


def test_a_file_claiming_an_absurd_rate_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "fast.wav"
    sf.write(path, np.zeros(1000, np.float32), 1_000_003)
    with pytest.raises(AudioFileError, match=r"fast\.wav: sample rate 1000003 Hz is outside"):
        read_file(path)
