#!/usr/bin/env python3
"""Read YAMNet's weights out of ``yamnet.tflite`` into :class:`monitor.inference.models.yamnet.Yamnet`.

    python tools/import_yamnet.py [--tflite ../shared/models/yamnet/yamnet.tflite] [--out models/detector-yamnet.pt]

No TensorFlow: the ``tflite`` package reads the flatbuffer schema, and this walks the graph's operators in order,
taking each one's constant inputs. Float16 weights (the converter stored some depthwise kernels so, behind a
``DEQUANTIZE``) are widened to float32. The source file's sha256 must be the one ``../shared/models/yamnet/README.md``
names, so a different conversion cannot slip in; the result is listed in ``models/manifest.json`` like every model.

The weights are Google's (Apache-2.0, "YAMNet, Copyright 2019 The TensorFlow Authors"); ``models/yamnet.md`` carries
the attribution.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from monitor.inference.models.yamnet import Yamnet
from monitor.inference.weights import MODELS_DIR, sha256_of, write_manifest_entry

ROOT = Path(__file__).resolve().parents[2]
TFLITE = ROOT.parent / "shared" / "models" / "yamnet" / "yamnet.tflite"
TFLITE_SHA256 = "469be6a3"  # the prefix ../shared/models/yamnet/README.md gives (its tail: …e04194)
TFLITE_SHA256_TAIL = "e04194"


def _operators(path: Path) -> list[tuple[str, list[np.ndarray | None], list[float | None]]]:
    """(operator name, its inputs as constants or None, each input's int8 scale or None) for every operator of the
    file's graph, in order."""
    import tflite

    buf = path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    names = {code: name for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
    numpy_type = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
                  tflite.TensorType.INT32: np.int32, tflite.TensorType.INT8: np.int8}

    constants: dict[int, np.ndarray] = {}
    scales: dict[int, float] = {}  # of the int8 weights, all quantized per tensor in this file
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, np.ndarray) and data.size and tensor.Type() in numpy_type:
            shape = tuple(tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            array = np.frombuffer(data.tobytes(), numpy_type[tensor.Type()]).reshape(shape)
            constants[i] = _dequantized(array, tensor.Quantization()) if array.dtype == np.int8 else array
            if array.dtype == np.int8 and tensor.Quantization().ScaleLength() == 1:
                scales[i] = float(tensor.Quantization().ScaleAsNumpy()[0])

    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        inputs = [constants.get(int(t)) if t >= 0 else None for t in op.InputsAsNumpy()]
        if name == "DEQUANTIZE" and inputs[0] is not None:  # a float16 weight: later ops read its output
            constants[int(op.OutputsAsNumpy()[0])] = inputs[0].astype(np.float32)
            continue
        ops.append((name, inputs, [scales.get(int(t)) for t in op.InputsAsNumpy()]))
    return ops


def _dequantized(array: np.ndarray, quantization) -> np.ndarray:
    """An int8 weight of the file's dynamic-range quantization as float32: ``(q - zero_point) · scale``, the scale
    per tensor or per channel along ``QuantizedDimension``."""
    scale, zero = quantization.ScaleAsNumpy(), quantization.ZeroPointAsNumpy()
    shape = [1] * array.ndim
    if np.size(scale) > 1:
        shape[quantization.QuantizedDimension()] = -1
    return ((array.astype(np.float32) - np.reshape(zero, shape)) * np.reshape(scale, shape)).astype(np.float32)


def _layers(path: Path) -> tuple[np.ndarray, list, list, list]:
    """The window, and the (inputs, scales) of the fully connected layers (DFT real, DFT imaginary, mel with the
    log offset as bias, dense), the convolutions (the first, then the pointwise ones) and the depthwise ones."""
    ops = _operators(path)
    by_kind: dict[str, list] = {}
    for name, inputs, scales in ops:
        by_kind.setdefault(name, []).append((inputs, scales))
    window = next(inputs[1] for name, inputs, _ in ops if name == "MUL" and inputs[1] is not None)
    pad = next(inputs[1] for name, inputs, _ in ops if name == "PAD")
    fully, convs, depthwise = by_kind["FULLY_CONNECTED"], by_kind["CONV_2D"], by_kind["DEPTHWISE_CONV_2D"]
    if len(fully) != 4 or len(convs) != 14 or len(depthwise) != 13 or pad.tolist() != [[0, 0], [56, 56]]:
        raise ValueError(f"{path}: not the YAMNet graph this importer knows (see ../shared/models/yamnet/README.md)")
    return window, fully, convs, depthwise


def state_dict_from_tflite(path: Path) -> dict[str, torch.Tensor]:
    """The :class:`Yamnet` state dict held by the TFLite file at ``path``."""
    window, fully, convs, depthwise = (x if i == 0 else [inputs for inputs, _ in x]
                                       for i, x in enumerate(_layers(path)))

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array, dtype=np.float32))  # a copy: the flatbuffer is read-only

    state = {
        "frontend.window": tensor(window.reshape(-1)),
        "frontend.dft_real": tensor(fully[0][1]),
        "frontend.dft_imag": tensor(fully[1][1]),
        "frontend.mel": tensor(fully[2][1]),
        "frontend.mel_offset": tensor(fully[2][2]),
        "conv1.weight": tensor(convs[0][1].transpose(0, 3, 1, 2)),  # OHWI → OIHW
        "conv1.bias": tensor(convs[0][2]),
        "dense.weight": tensor(fully[3][1]),
        "dense.bias": tensor(fully[3][2]),
    }
    for i, (dw, pw) in enumerate(zip(depthwise, convs[1:])):
        state[f"blocks.{i}.depthwise.weight"] = tensor(dw[1].transpose(3, 0, 1, 2))  # 1HWC → C1HW
        state[f"blocks.{i}.depthwise.bias"] = tensor(dw[2])
        state[f"blocks.{i}.pointwise.weight"] = tensor(pw[1].transpose(0, 3, 1, 2))
        state[f"blocks.{i}.pointwise.bias"] = tensor(pw[2])
    return state


def tflite_weight_scales(path: Path) -> dict[str, float]:
    """The int8 scale of each of the file's quantized weights, by :class:`Yamnet` parameter name: what
    ``Yamnet(weight_scales=…)`` needs to compute what the file's own kernels compute."""
    _, fully, convs, _ = _layers(path)
    names = ["frontend.dft_real", "frontend.dft_imag", "frontend.mel", "dense.weight"]
    found = {name: scales[1] for name, (_, scales) in zip(names, fully)}
    found |= {f"blocks.{i}.pointwise.weight": scales[1] for i, (_, scales) in enumerate(convs[1:])}
    if any(scale is None for scale in found.values()):
        raise ValueError(f"{path}: a layer this importer expects in int8 is not")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflite", type=Path, default=TFLITE)
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "detector-yamnet.pt")
    args = parser.parse_args(argv)
    digest = sha256_of(args.tflite)
    if not (digest.startswith(TFLITE_SHA256) and digest.endswith(TFLITE_SHA256_TAIL)):
        raise SystemExit(f"{args.tflite}: sha256 {digest[:12]}… is not the released YAMNet conversion "
                         f"({TFLITE_SHA256}…{TFLITE_SHA256_TAIL})")
    model = Yamnet()
    model.load_state_dict(state_dict_from_tflite(args.tflite))
    torch.save(model.state_dict(), args.out)
    written = write_manifest_entry(args.out.parent, args.out.name, "yamnet-cry", {})
    print(f"wrote {args.out} (sha256 {written[:12]}…) from {args.tflite} (sha256 {digest})")


if __name__ == "__main__":
    main()
