"""The training loop and its run folder: metrics, checkpoints, exact resume, refusals."""

import json

import pytest
import torch

from spikeport.config import config_from_dict
from spikeport.train import loop
from spikeport.train.checkpoint import load_checkpoint


def test_training_writes_the_run_folder(tiny_config, tmp_path):
    run = tmp_path / "run"
    history = loop.train(config_from_dict(tiny_config), run, device="cpu")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.jsonl"]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines == history and [m["epoch"] for m in lines] == [1, 2, 3]
    assert set(lines[0]) == {"epoch", "train_loss", "train_acc", "val_acc", "test_acc", "lr", "seconds"}  # val: the held-out 10% of train
    assert lines[0]["lr"] == 0.01 and lines[1]["lr"] < 0.01  # cosine schedule
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert lines[-1]["test_acc"] > 0.5  # ten classes: chance is 0.1
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epochs_done"] == 3 and state["config"] == config_from_dict(tiny_config).to_dict()


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tiny_config, tmp_path, request):
    config = config_from_dict(tiny_config)
    loop.train(config, tmp_path / "whole", device="cpu")

    resume_normal_saving = request.getfixturevalue("interrupt_after_first_epoch")
    with pytest.raises(KeyboardInterrupt):
        loop.train(config, tmp_path / "cut", device="cpu")
    resume_normal_saving()
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epochs_done"] == 1

    history = loop.train(config, tmp_path / "cut", device="cpu", resume=True)
    assert [m["epoch"] for m in history] == [1, 2, 3]
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, cut["model"][name]), name
    strip = lambda h: [{k: v for k, v in m.items() if k != "seconds"} for m in h]  # noqa: E731
    assert strip(whole["metrics"]) == strip(cut["metrics"])


def test_run_folder_refusals(tiny_config, tmp_path):
    config = config_from_dict(tiny_config)
    run = tmp_path / "run"
    from spikeport.errors import UserError

    with pytest.raises(UserError, match="holds no checkpoint.pt to resume from"):
        loop.train(config, run, device="cpu", resume=True)
    tiny_config["train"]["epochs"] = 1
    loop.train(config_from_dict(tiny_config), run, device="cpu")
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(UserError, match="already holds this run; pass --resume"):
        loop.train(config_from_dict(tiny_config), run, device="cpu")
    tiny_config["train"]["lr"] = 0.5
    with pytest.raises(UserError, match="holds a different run"):
        loop.train(config_from_dict(tiny_config), run, device="cpu")
    with pytest.raises(UserError, match="trained with another config"):
        loop.train(config_from_dict(tiny_config), run, device="cpu", resume=True)
    assert (run / "checkpoint.pt").read_bytes() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a spikeport run folder"):
        loop.train(config, tmp_path / "other", device="cpu")


@pytest.mark.parametrize("augment", ["cutmix", "mixup"])
def test_batch_augmentation_trains_deterministically(tiny_config, tmp_path, augment):
    tiny_config["train"].update(epochs=2, batch_augment=augment, seed=11)
    first = loop.train(config_from_dict(tiny_config), tmp_path / "a", device="cpu")
    second = loop.train(config_from_dict(tiny_config), tmp_path / "b", device="cpu")
    strip = lambda h: [{k: v for k, v in m.items() if k != "seconds"} for m in h]  # noqa: E731
    assert strip(first) == strip(second)
    plain = loop.train(config_from_dict({**tiny_config, "train": {**tiny_config["train"], "batch_augment": "none"}}), tmp_path / "c", device="cpu")
    assert strip(plain) != strip(first)  # the augmentation changed what was trained


def test_step_schedule_and_no_validation_split(tiny_config, tmp_path):
    """train.schedule step is OGM-GE's StepLR(step_size, 0.1); with data.options.validation 0 the
    model trains on the whole training split and no val_acc is logged."""
    tiny_config["train"].update(epochs=3, optimizer="sgd", lr=0.1, schedule="step", step_size=2)
    tiny_config["data"]["options"] = {"validation": 0.0}
    history = loop.train(config_from_dict(tiny_config), tmp_path / "run", device="cpu")
    assert [m["lr"] for m in history] == [0.1, 0.1, pytest.approx(0.01)]
    assert "val_acc" not in history[0]


def test_bad_schedule_is_a_user_error(tiny_config):
    from spikeport.errors import UserError

    tiny_config["train"]["schedule"] = "linear"
    with pytest.raises(UserError, match="train.schedule must be one of cosine, step"):
        config_from_dict(tiny_config)
