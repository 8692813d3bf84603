#!/usr/bin/env bash
# The default detector from scratch, one command (about 45 minutes on 2 CPU cores, 20 of them building and scoring
# the six nursery sets the first time):
#   1. YAMNet's weights out of ../shared/models/yamnet/yamnet.tflite        -> models/detector-yamnet.pt
#   2. fine-tuned on our cries without forgetting (training groups only)   -> models/detector-yamnet-lwf.pt
#   3. both exported to ONNX and checked against torch on real audio, the fine-tuned one also in int8
#                                                                           -> models/*.onnx
#   4. presets chosen on the three nursery calibration sets, the comparison on the three report sets
#                                                                           -> models/manifest.json,
#      models/detector-comparison.md (the card, models/detector-yamnet-lwf.md, quotes it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" tools/import_yamnet.py
"$PY" tools/finetune_yamnet.py
"$PY" tools/export_onnx.py --model models/detector-yamnet.pt
"$PY" tools/export_onnx.py --model models/detector-yamnet-lwf.pt --int8
"$PY" tools/compare_detectors.py --calibrate models/detector-yamnet-lwf.onnx --out /dev/null  # the fp32 presets
"$PY" tools/compare_detectors.py --calibrate models/detector-yamnet-lwf-int8.onnx  # the default's, and the table
