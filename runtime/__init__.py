"""Runtimes: the exported network run in Lava, in the reference runtime (torch) and in ONNX Runtime."""
