"""The bounded readers (spikeport/readers.py): what they still accept.

Every resource bomb of the bad-input corpus (config-billion-laughs, config-absurd-*, the npz and
YAML bombs, nir-absurd-padding, nir-external-storage-fifo, onnx-external-fifo) is refused before
torch is imported, and runs in a real process in tests/test_bad_inputs.py within issue 19's
absolute budget (5 s of CPU, 500 MB).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import yaml

from spikeport.errors import UserError
from spikeport.readers import check_hdf5, check_onnx_external, load_npz, load_yaml, parse_yaml

# --- what the readers still accept -------------------------------------------------------------------


def test_yaml_aliases_within_the_budget_still_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {lr: 0.01, epochs: 2}\ntrain: *b\nagain: [*b, *b, *b]\n")
    assert load_yaml(path) == yaml.safe_load(path.read_text())


def test_yaml_bounds_are_counted_with_aliases_expanded():
    """Nine aliases of nine, six levels deep, is 531441 values from 400 bytes: refused; five levels
    (59049) read."""
    laughs = lambda levels: "a0: &a0 [" + ", ".join(["x"] * 9) + "]\n" + "".join(  # noqa: E731
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, levels)
    )
    assert len(parse_yaml(laughs(5), "five")["a4"]) == 9
    with pytest.raises(UserError, match="six: the YAML expands to more than 100000 values"):
        parse_yaml(laughs(6), "six")
    with pytest.raises(UserError, match="recursive"):
        parse_yaml("a: &a [1, *a]", "loop")


def test_npz_members_read_as_numpy_reads_them(tmp_path):
    arrays = {"input": np.random.default_rng(0).random((3, 2, 4)).astype(np.float32), "labels": np.arange(3), "flag": np.array(True)}
    for save in (np.savez, np.savez_compressed):
        save(tmp_path / "a.npz", **arrays)
        names, read = load_npz(tmp_path / "a.npz")
        assert sorted(names) == sorted(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(read[key], value)
            assert read[key].dtype == value.dtype


def test_npz_over_the_memory_budget_is_refused_from_its_header(tmp_path):
    np.savez(tmp_path / "a.npz", input=np.zeros((256, 256), np.float32))  # 256 KiB
    assert load_npz(tmp_path / "a.npz", budget=2**18)[1]["input"].shape == (256, 256)
    with pytest.raises(UserError, match="declare 256.0 KiB, more than the 128.0 KiB"):
        load_npz(tmp_path / "a.npz", budget=2**17)


def test_onnx_external_data_inside_the_folder_is_accepted_and_runs(tmp_path):
    """A model saved with its weights in a side file (onnx's save_as_external_data) is what large
    models look like: accepted, and onnxruntime gives the same result as for the one-file model."""
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 4])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "one.onnx")
    onnx.save(model, tmp_path / "split.onnx", save_as_external_data=True, location="split.data", size_threshold=0)
    assert (tmp_path / "split.data").stat().st_size == 48
    check_onnx_external(tmp_path / "split.onnx")
    x = {"x": np.ones((2, 3), np.float32)}
    run = lambda name: onnxruntime.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"]).run(None, x)[0]  # noqa: E731
    np.testing.assert_array_equal(run("split.onnx"), run("one.onnx"))


def test_hdf5_hard_links_and_plain_datasets_are_accepted(tmp_path):
    import h5py

    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["a/b"] = np.ones(3)
        f["c"] = f["a/b"]  # a second hard link to the same dataset is still inside the file
    check_hdf5(tmp_path / "f.h5", "test", max_dataset=3, max_total=6)
    with pytest.raises(UserError, match="declares 6 elements in all, more than 5"):
        check_hdf5(tmp_path / "f.h5", "test", max_total=5)
