"""Export: a trained model to NIR, ONNX and Lava-compatible files (ARCHITECTURE.md, "Partitions")."""
