"""Lava as an out-of-process backend (see plan.py, sandbox.py and worker/)."""
