"""A trained network at work: torch / onnxruntime back ends (folded BN, bf16), the cache of
exported ONNX models, feature extraction and the test protocols' metrics."""
