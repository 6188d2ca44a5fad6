"""What runs the product around a model of `modeling`: loading a model named on a command line, batch prediction
with crash-proof decoder processes, the demo's live sessions, faster CPU paths (ONNX), atomic file writes."""
