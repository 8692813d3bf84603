"""Pure core, numpy only: the ring buffer, the state machine, the reason schedule, the pipeline, the controls, the
microphone health check and the statistics. No I/O, no torch, no ONNX Runtime (``tests/test_layout.py``)."""
