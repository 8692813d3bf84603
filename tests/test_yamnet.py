"""YAMNet as a torch module (monitor.inference.models.yamnet): equal to its TFLite file on real audio, and usable
as a window-form detector."""

import numpy as np
import pytest
import torch

from conftest import DATA
from monitor.audio.files import read_file
from monitor.offline.data import read_clips
from monitor.inference.models.yamnet import CRY_CLASS, PATCH_SAMPLES, Yamnet
from monitor.inference.weights import MODELS_DIR, load_model
from monitor.training.nursery_soundscapes import wideband_cries
from monitor.training.yamnet_import import TFLITE, state_dict_from_tflite, tflite_weight_scales

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert (the test extra) runs the file")


def patches(val_clips, count: int) -> list[np.ndarray]:
    """The first 0.975 s of ``count`` held-out real recordings spread over the sorted list (every category: cries,
    speech, music, animals, household effects)."""
    chosen = sorted(val_clips, key=lambda c: str(c.path))
    out = []
    for clip in chosen[:: len(chosen) // count][:count]:
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
    model = Yamnet(weight_scales=tflite_weight_scales(TFLITE)).eval()
    model.load_state_dict(state_dict_from_tflite(TFLITE))
    score_errors, logmel_errors = [], []
    for x in patches(val_clips, 24):
        interpreter.set_tensor(given, x[None])
        interpreter.invoke()
        with torch.no_grad():
            ours = torch.sigmoid(model(torch.from_numpy(x[None]))).numpy()
            logmel = model.frontend(torch.from_numpy(x[None]))[0].numpy()
        score_errors.append(np.abs(ours - interpreter.get_tensor(scores_out)).max())
        logmel_errors.append(np.abs(logmel - interpreter.get_tensor(logmel_out)).max())
    # every clip: the int8 roundings inside fall the same way only if every float before them is the same to the bit
    assert max(score_errors) <= 1e-4, score_errors
    assert max(logmel_errors) <= 1e-6, logmel_errors


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
