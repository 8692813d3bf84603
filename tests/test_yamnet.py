"""YAMNet read out of its TFLite file (monitor.inference.models.yamnet, monitor.training.yamnet_import): equal to the
file on real audio, the shipped copy equal to a fresh import, and usable as a window-form detector."""

import numpy as np
import pytest
import torch

from conftest import DATA
from monitor.audio.files import read_file
from monitor.offline.data import read_clips
from monitor.inference.models.yamnet import CRY_CLASS, PATCH_SAMPLES, Yamnet, YamnetCry
from monitor.inference.weights import MODELS_DIR, load_model
from monitor.training.nursery_soundscapes import wideband_cries
from monitor.training.yamnet_import import TFLITE, state_dict_from_tflite

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert (the test extra) runs the file")


def patches(val_clips, count: int) -> list[np.ndarray]:
    """The first 0.975 s of held-out real recordings: wideband cries and animal and household effects."""
    chosen = sorted((c for c in val_clips if c.source in ("donateacry-raw", "tuxpaint-stamps-default 2022.06.04-1 "
                                                                             "(Debian)")), key=lambda c: c.path.name)
    out = []
    for clip in chosen[:count]:
        x = read_file(clip.path)[:PATCH_SAMPLES]
        out.append(np.pad(x, (0, PATCH_SAMPLES - x.size)).astype(np.float32))
    return out


def test_yamnet_equals_the_tflite_file_on_real_audio(val_clips):
    # TFLite's own kernels (no XNNPACK delegate, which approximates them differently) are the file's definition.
    interpreter = litert.Interpreter(str(TFLITE), num_threads=1,
                                     experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    given = interpreter.get_input_details()[0]["index"]
    scores_out, logmel_out = (o["index"] for o in interpreter.get_output_details())
    model = Yamnet(tflite_kernels=True).eval()
    model.load_state_dict(state_dict_from_tflite(TFLITE))
    score_errors, logmel_close = [], []
    for x in patches(val_clips, 24):
        interpreter.set_tensor(given, x[None])
        interpreter.invoke()
        with torch.no_grad():
            ours = torch.sigmoid(model(torch.from_numpy(x[None]))).numpy()
            logmel = model.frontend(torch.from_numpy(x[None]))[0].numpy()
        score_errors.append(np.abs(ours - interpreter.get_tensor(scores_out)).max())
        logmel_close.append(np.mean(np.abs(logmel - interpreter.get_tensor(logmel_out)) <= 1e-4))
    # Layers re-round their inputs to int8; a value that lands on a rounding tie after float sums in another order
    # (which also depends on torch's thread count) moves one step, so a few clips differ by up to a few 1e-2
    # while most agree to 1e-7.
    assert np.mean(np.array(score_errors) <= 1e-4) >= 0.6, score_errors
    assert max(score_errors) <= 0.1, score_errors
    assert np.mean(logmel_close) >= 0.999


def test_the_importer_refuses_another_tflite_file_in_one_line(tmp_path):
    from monitor.training.yamnet_import import main

    modified = tmp_path / "yamnet.tflite"
    data = bytearray(TFLITE.read_bytes())
    data[-100] ^= 1
    modified.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="is not the released YAMNet conversion") as stopped:
        main(["--tflite", str(modified), "--out", str(tmp_path / "yamnet.pt")])
    assert "\n" not in str(stopped.value) and not (tmp_path / "yamnet.pt").exists()


def test_shipped_yamnet_detector_is_the_file_s_weights():
    model, entry = load_model(MODELS_DIR / "detector-yamnet.pt")
    assert entry.arch == "yamnet-cry" and isinstance(model, YamnetCry)
    for name, tensor in state_dict_from_tflite(TFLITE).items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_yamnet_hears_a_held_out_wideband_cry_and_not_a_quiet_room():
    model, _ = load_model(MODELS_DIR / "detector-yamnet.pt")
    cry = read_file(wideband_cries(read_clips(DATA))[0].path)
    windows = np.stack([cry[i : i + PATCH_SAMPLES] for i in range(0, cry.size - PATCH_SAMPLES, 8000)])
    quiet = np.random.default_rng(0).standard_normal((1, PATCH_SAMPLES)).astype(np.float32) * 1e-4
    with torch.no_grad():
        cry_scores = torch.sigmoid(model(torch.from_numpy(windows))).numpy()
        room = float(torch.sigmoid(model(torch.from_numpy(quiet)))[0])
    assert cry_scores.max() > 0.9 and room < 0.05, (cry_scores, room)


def test_yamnet_shapes_and_cry_output():
    detector, _ = load_model(MODELS_DIR / "detector-yamnet.pt")
    model = Yamnet().eval()
    model.load_state_dict(detector.state_dict())
    x = torch.randn(2, 20000) * 0.1
    with torch.no_grad():
        assert model(x).shape == (2, 521) and model.embed(x).shape == (2, 1024)
        assert torch.equal(detector(x), model(x)[:, CRY_CLASS])  # the last 0.975 s, the cry logit
    # MobileNet-v1 at YAMNet's widths with batch norm folded into biases: conv1, 13 × (depthwise + pointwise), dense
    widths = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    blocks = sum(a * 9 + a + b * a + b for a, b in zip(widths[:-1], widths[1:]))
    assert sum(p.numel() for p in model.parameters()) == 32 * 9 + 32 + blocks + 1024 * 521 + 521 == 3_729_481


NO_VNNI_CHECK = """
import sys, numpy as np, onnxruntime as ort, soundfile as sf
from numpy._core._multiarray_umath import __cpu_features__ as cpu
audio = sf.read(sys.argv[1], dtype="float32")[0]
windows = np.stack([audio[i : i + 15600] for i in range(0, 12 * 3840, 3840)])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[2], options, providers=["CPUExecutionProvider"])
np.save(sys.argv[3], session.run(None, {"windows": windows})[0])
print(cpu["AVX512VNNI"], cpu["AVX512F"])
"""


@pytest.mark.slow  # seconds of real work: the full suite, not the fast lane
def test_int8_detector_scores_the_same_on_a_cpu_without_vnni(tmp_path, cry_then_quiet):
    # ONNX Runtime's int8 kernels differ by CPU: with VNNI, and without it (AVX2 only), where uint8 × int8 pairs are
    # added in 16 bits and saturate on full-range weights. The export keeps 7-bit weights for that reason; qemu's
    # user-mode emulation of a Haswell (AVX2, no AVX-512, no VNNI) runs the AVX2 kernels on this machine.
    import subprocess
    import sys

    from conftest import need

    qemu = need("qemu-x86_64")
    model = MODELS_DIR / "detector-yamnet-lwf-int8.onnx"
    outputs = {}
    for cpu, prefix in (("native", []), ("haswell", [qemu, "-cpu", "Haswell"])):
        out = tmp_path / f"{cpu}.npy"
        run = subprocess.run([*prefix, sys.executable, "-c", NO_VNNI_CHECK, str(cry_then_quiet), str(model), str(out)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        outputs[cpu] = (np.load(out), run.stdout.split())
    assert outputs["haswell"][1] == ["False", "False"]  # the emulated CPU really has no VNNI and no AVX-512
    native, haswell = outputs["native"][0], outputs["haswell"][0]
    probability = lambda logits: 1 / (1 + np.exp(-np.clip(logits, -50, 50)))  # noqa: E731
    assert np.abs(probability(native) - probability(haswell)).max() <= 0.01
