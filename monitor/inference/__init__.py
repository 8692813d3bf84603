"""The models: the detector and the reason classifier in either runtime (ONNX Runtime or torch), their front
end, their files and manifest, and the torch architectures (``models``)."""
