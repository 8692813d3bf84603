"""The numpy log-mel front end (monitor/inference/features.py) equals the models' torch one."""

import numpy as np
import torch

from monitor.inference.features import logmel, mel_filterbank
from monitor.inference.models.logmel import LogMel


def test_numpy_logmel_equals_the_models_torch_logmel_on_a_real_cry(val_clips):
    """The classifier's ONNX path computes its log-mel in numpy; training used torch."""
    from conftest import pick
    from monitor.audio.files import read_file

    np.testing.assert_allclose(mel_filterbank(), LogMel().mel.mel_scale.fb.numpy(), atol=1e-6)
    audio = read_file(pick(val_clips, "donateacry-cleaned", "cry")[0].path)
    expected = LogMel()(torch.from_numpy(audio)[None])[0].numpy()
    assert logmel(audio).shape == expected.shape
    np.testing.assert_allclose(logmel(audio), expected, atol=1e-2)  # torch: float32 STFT
