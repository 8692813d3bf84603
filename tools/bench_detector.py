#!/usr/bin/env python3
"""Benchmark the detector's variants on loud real audio, one row each, in one run.

    taskset -c 0 python tools/bench_detector.py [FILE] [--seconds 60] [--repeats 3]

Variants (those whose model file is shipped): the detector scored window by window at its hop (what the
window-form detector did); the same model streamed through the daemon's pipeline in torch, and as its ONNX export
in fp32 and int8 in ONNX Runtime; and the distilled student (``models/detector-small.pt``) streamed. Columns:
milliseconds of CPU per second of audio and × real time fed in 0.1 s chunks as live, × real time fed in 5 s
blocks as ``crymonitor replay`` does (medians of the repeats, start-up excluded, one thread: pin the process to
one core with ``taskset -c 0``), the
model's multiply-accumulates per second of audio as it is run, the peak RSS of a fresh process that loads the
model and scores the file (measured in a child process, so one variant's memory does not hide another's), and
the largest difference of its probabilities from the reference: the same torch model (for an export, the file it
was exported from) scoring each window on its own. Streaming and the fp32 export must be within 1e-4; int8 and the
student are other models (their quality is in their cards). Last, each ONNX export alone in a fresh process that
imports no torch (the edge path: numpy, soundfile and ONNX Runtime), one run, for its CPU time and peak RSS; and
the whole daemon (``crymonitor run --input``, default config: int8 detector and ONNX classifier, MQTT off) on
the file paced in real time, in an environment where ``import torch`` fails, for its share of one core after
start-up and its peak RSS; the streaming resampler at the rates microphones and files have (issue 12: 44,101 Hz
once took 12 GB); last, the reason classifier's time on the audio it gets for its first and refined
answers. The file should be loud throughout (default: a music track), so the loudness gate
never helps. Timing belongs here, never in a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor import SAMPLE_RATE  # noqa: E402
from monitor.audio.files import read_file  # noqa: E402
from monitor.config import Config, override  # noqa: E402
from monitor.core.pipeline import Pipeline  # noqa: E402
from monitor.inference.classify import ReasonClassifier  # noqa: E402
from monitor.inference.detect import CryDetector  # noqa: E402
from monitor.inference.models import count_macs, streamed_macs_per_second  # noqa: E402
from monitor.inference.weights import MODELS_DIR  # noqa: E402

DEFAULT = ROOT.parent / "shared/data/notcry/music/asterisk-moh/manolo_camp-morning_coffee.flac"
VARIANTS = [("detector, window by window", "detector.pt"), ("detector, streamed (torch)", "detector.pt"),
            ("detector, streamed (ONNX Runtime fp32)", "detector.onnx"),
            ("detector int8, streamed (ONNX Runtime)", "detector-int8.onnx"),
            ("student, streamed (torch)", "detector-small.pt"),
            ("YAMNet fine-tuned, window by window", "detector-yamnet-lwf.pt"),
            ("YAMNet fine-tuned, windows through the pipeline (ONNX Runtime fp32)", "detector-yamnet-lwf.onnx"),
            ("YAMNet fine-tuned int8 (default), windows through the pipeline (ONNX Runtime)",
             "detector-yamnet-lwf-int8.onnx")]


def config_for(model: Path) -> Config:
    config = override(Config(), "detector", model=str(model), gate_dbfs=-120.0, threads=1)  # the gate never helps
    return override(config, "classifier", enabled=False)


def window_by_window(detector: CryDetector, audio: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    n = detector.window_samples
    ends = np.arange(n, audio.size + 1, hop)
    return ends, np.concatenate([detector.score_windows(audio[None, e - n : e]) for e in ends])


def streamed(detector: CryDetector, config: Config, audio: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Through the daemon's pipeline in chunks of ``chunk`` samples (0.1 s live, 5 s in a replay)."""
    pipeline = Pipeline(config, detector)
    scores = [s for i in range(0, audio.size, chunk) for s in pipeline.feed(audio[i : i + chunk]).scores]
    return np.array([round(s.t * SAMPLE_RATE) for s in scores]), np.array([s.score for s in scores])


def median_cpu_seconds(run, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.process_time()
        result = run()
        times.append(time.process_time() - started)
    return statistics.median(times), result


def measure(variant: str, model: Path, path: str, seconds: float, repeats: int) -> dict:
    """One variant in this process: timings, MACs and the match against the same model window by window."""
    torch.set_num_threads(1)
    config = config_for(model)
    detector = CryDetector(config.detector)
    hop = round(detector.hop_seconds * SAMPLE_RATE)
    audio = read_file(path)[: round(seconds * SAMPLE_RATE)]
    by_window = variant.endswith("window by window")
    if by_window:
        took, (ends, probs) = median_cpu_seconds(lambda: window_by_window(detector, audio, hop), repeats)
        replay_took = took
    else:
        took, (ends, probs) = median_cpu_seconds(lambda: streamed(detector, config, audio, SAMPLE_RATE // 10), repeats)
        replay_took, _ = median_cpu_seconds(lambda: streamed(detector, config, audio, 5 * SAMPLE_RATE), repeats)
    # the reference: the torch model (for an export, the file it was exported from) scored window by window
    torch_model = model if model.suffix == ".pt" else model.parent / detector.entry.kwargs["exported_from"]
    reference_detector = CryDetector(config_for(torch_model).detector)
    ref_ends, reference = window_by_window(reference_detector, audio, hop)
    difference = float(np.max(np.abs(probs - reference))) if np.array_equal(ends, ref_ends) else float("inf")
    macs = (count_macs(reference_detector.runtime.model, torch.zeros(1, detector.window_samples)) * SAMPLE_RATE / hop
            if by_window or not detector.streaming else streamed_macs_per_second(reference_detector.runtime.model, hop))
    return {"variant": variant, "model": detector.model_id, "ms_per_s": 1000 * took / (audio.size / SAMPLE_RATE),
            "x_realtime": audio.size / SAMPLE_RATE / took, "replay_x": audio.size / SAMPLE_RATE / replay_took,
            "gmacs_per_s": macs / 1e9, "difference": difference, "hop": hop / SAMPLE_RATE}


def child(variant: str, model: Path, path: str, seconds: float) -> float:
    """Peak RSS (MB) of a fresh process that loads the model and scores the file once: its VmHWM, which exec
    resets (ru_maxrss would carry this process's own peak over the fork)."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tools')!r}); import bench_detector as b; "
            f"b.measure({variant!r}, b.Path({str(model)!r}), {path!r}, {seconds}, 1); "
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1])")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


EDGE = """
import sys, time
import numpy as np, soundfile as sf
from monitor.config import DetectorConfig
from monitor.inference.detect import CryDetector
audio = sf.read({wav!r}, dtype="float32")[0]
detector = CryDetector(DetectorConfig(model={model!r}))
stream = detector.stream(round(detector.hop_seconds * 16000))
started = time.process_time()
for i in range(0, audio.size, 1600):
    stream.push(audio[i : i + 1600])
took = time.process_time() - started
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]
print(took, hwm, any(m.split(".")[0] == "torch" for m in sys.modules))
"""


def edge(model: Path, audio: np.ndarray) -> tuple[float, float, bool]:
    """The ONNX model's score stream alone (no level gate) in a fresh process that imports no torch: (CPU seconds,
    peak RSS MB, torch seen)."""
    import tempfile

    import soundfile as sf

    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        sf.write(wav.name, audio, SAMPLE_RATE)
        out = subprocess.run([sys.executable, "-c", EDGE.format(wav=wav.name, model=str(model))], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout.split()
    return float(out[0]), int(out[1]) / 1024, out[2] == "True"


def live_daemon(audio: np.ndarray, warm_up: float = 10.0) -> tuple[float, float]:
    """``crymonitor run --input`` on ``audio`` paced in real time, torch unimportable: (share of one core from
    ``warm_up`` s to 2 s before the end of the audio, peak RSS MB)."""
    import signal
    import tempfile

    import soundfile as sf

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        sf.write(folder / "loud.wav", audio, SAMPLE_RATE)
        (folder / "c.yaml").write_text(f"mqtt:\n  enabled: false\nstate:\n  dir: {folder / 'state'}\n")
        (folder / "torch").mkdir()
        (folder / "torch" / "__init__.py").write_text("raise ImportError('no torch on the edge')\n")
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(folder / "c.yaml"), "--input",
                                 str(folder / "loud.wav")], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(folder)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def cpu_seconds() -> float:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

        measured = audio.size / SAMPLE_RATE - warm_up - 2.0  # ends before the file does, so the daemon is still there
        time.sleep(warm_up)
        first = cpu_seconds()
        time.sleep(measured)
        share = (cpu_seconds() - first) / measured
        status = Path(f"/proc/{proc.pid}/status").read_text()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]
    return share, int(hwm) / 1024


RESAMPLE_RATES = (8000, 11025, 11127, 22050, 44100, 48000, 96000)


def resampling(seconds: float = 10.0) -> None:
    """The streaming resampler per input rate: ms of CPU per second of audio in 0.1 s chunks, and its filter table."""
    from monitor.audio.files import StreamResampler

    print("\n| input rate (Hz) | resampling: ms per s of audio | filter table (MB) |\n|---|---|---|")
    for rate in RESAMPLE_RATES:
        audio = np.random.default_rng(rate).standard_normal(int(seconds * rate)).astype(np.float32) * 0.1
        resampler = StreamResampler(rate)
        chunk = rate // 10
        started = time.process_time()
        for i in range(0, audio.size, chunk):
            resampler.process(audio[i : i + chunk])
        resampler.flush()
        took = time.process_time() - started
        table = resampler.filter_bytes / 1e6
        print(f"| {rate} | {1000 * took / seconds:.2f} | {table:.2f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", default=str(DEFAULT))
    parser.add_argument("--seconds", type=float, default=60.0, help="how much of the file to score")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    variants = [(name, MODELS_DIR / file) for name, file in VARIANTS if (MODELS_DIR / file).exists()]
    print(f"file: {args.file}, first {args.seconds:g} s; CPU time of this process, 1 torch thread; "
          f"affinity {sorted(os.sched_getaffinity(0))}")
    print("| variant | model | hop (s) | live: ms per s of audio | live: × real time | replay: × real time | "
          "GMAC per s of audio | peak RSS (MB) | max prob. difference from torch window by window |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant, model in variants:
        row = measure(variant, model, args.file, args.seconds, args.repeats)
        rss = child(variant, model, args.file, min(args.seconds, 20.0))
        print(f"| {variant} | {row['model']} | {row['hop']:g} | {row['ms_per_s']:.1f} | {row['x_realtime']:.0f} | "
              f"{row['replay_x']:.0f} | {row['gmacs_per_s']:.2f} | {rss:.0f} | {row['difference']:.1e} |", flush=True)
    audio = read_file(args.file)[: round(args.seconds * SAMPLE_RATE)]
    for name in ("detector-yamnet-lwf-int8.onnx", "detector-yamnet-lwf.onnx", "detector-int8.onnx", "detector.onnx"):
        if (MODELS_DIR / name).exists():
            took, rss, torch_seen = edge(MODELS_DIR / name, audio)
            seconds = audio.size / SAMPLE_RATE
            print(f"| {name}, edge path alone (numpy + ONNX Runtime{', torch imported!' if torch_seen else ', no torch'}) "
                  f"| – | – | {1000 * took / seconds:.1f} | {seconds / took:.0f} | – | – | {rss:.0f} | – |", flush=True)
    share, rss = live_daemon(audio)
    print(f"| the daemon, live (`crymonitor run`, default ONNX models, no torch), paced in real time | – | – | "
          f"{1000 * share:.1f} ({100 * share:.1f} % of one core) | – | – | – | {rss:.0f} | – |", flush=True)
    resampling()
    classifier = ReasonClassifier(Config().classifier)
    for after in Config().classifier.at_seconds():
        n = round((after + Config().classifier.lookback_seconds) * SAMPLE_RATE)
        took, _ = median_cpu_seconds(lambda: classifier.classify(audio[:n]), args.repeats)
        print(f"reason classifier ({Config().classifier.model.name}) on {n / SAMPLE_RATE:.1f} s of audio: "
              f"{1000 * took:.0f} ms of CPU, so the reason is out {after + took:.2f} s after cry_start", flush=True)


if __name__ == "__main__":
    main()
