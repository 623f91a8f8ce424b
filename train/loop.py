"""The training loop: config in, run folder out (ARCHITECTURE.md, "The run folder").

    runs/NAME/config.yaml      the resolved config
    runs/NAME/checkpoint.pt    written after every epoch (see checkpoint.py)
    runs/NAME/metrics.jsonl    one line per epoch (val_acc where the dataset has a `val` split;
                               audio-visual models add acc_fused, acc_audio, acc_visual, rho,
                               k_audio, k_visual, and alpha's mean and variance per timestep)
    runs/NAME/modalities.png   audio-visual models: the accuracy of each modality per epoch

Training is deterministic for a seed on the CPU: the weights are initialised from the seed and
each epoch shuffles with its own generator seeded from (seed, epoch), so an interrupted run
resumed from its last checkpoint ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, default_collate

from spikeport.config import Config, config_from_dict, read_yaml
from spikeport.console import console
from spikeport.progress import display
from spikeport.device import resolve_device
from spikeport.errors import UserError
from spikeport.io import check_creatable, holding_lock, is_locked, make_folder, write_text
from spikeport.train import datasets
from spikeport.train.checkpoint import load_checkpoint, load_weights, save_checkpoint
from spikeport.train.models import build_model
from spikeport.train.curves import plot_modalities
from spikeport.train.real_datasets import cutmix, mixup
from spikeport.train.taaf import AudioVisualSNN, AVOutput, av_loss, coefficients, gradient_noise, modality_scores, modulate_gradients, modulates_in


def model_for(config: Config) -> nn.Module:
    spec = datasets.spec(config.data.name)
    return build_model(config.model, spec.input_shape, spec.num_classes, config.data.timesteps, config.data.batch_size)


def time_major(x: torch.Tensor | list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Loader batches are [B, T, ...] (a list of them for a multi-input dataset); the models take
    [T, B, ...], one positional argument per input."""
    return [v.to(device).transpose(0, 1) for v in (x if isinstance(x, (list, tuple)) else [x])]


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the time-averaged logits (the fused logits of an
    audio-visual model)."""
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            y = y.to(device)
            out = model(*time_major(x, device))
            logits = out.logits if isinstance(out, AVOutput) else out.float().mean(0)
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
    return loss_sum / seen, correct / seen


def evaluate_modalities(model: AudioVisualSNN, loader: DataLoader, device: torch.device) -> dict:
    """An audio-visual model's imbalance on `loader`: fused accuracy, each modality's accuracy
    from its half of the classifier (as OGM-GE measures it), and the mean attention per timestep."""
    model.eval()
    correct, alpha, alpha_squares, seen = torch.zeros(3, dtype=torch.float64), 0.0, 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            y = y.to(device)
            out = model(*time_major(x, device))
            for i, logits in enumerate((out.logits, out.logits_audio, out.logits_visual)):
                correct[i] += (logits.argmax(1) == y).sum().item()
            alpha = alpha + out.alpha_audio.sum(1).cpu().double()
            alpha_squares = alpha_squares + out.alpha_audio.double().pow(2).sum(1).cpu()
            seen += len(y)
    accuracy = (correct / seen).tolist()
    mean = alpha / seen
    spread = (alpha_squares / seen - mean**2).clamp_min(0)  # over samples: does attention depend on the input?
    return {
        "acc_fused": accuracy[0], "acc_audio": accuracy[1], "acc_visual": accuracy[2],
        "alpha": [round(a, 6) for a in mean.tolist()], "alpha_var": [round(v, 8) for v in spread.tolist()],
    }


def _make_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    t = config.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


RUN_LOCK = ".train.lock"  # held by the training writing into a run folder, removed when it ends
# What a run writes before its first checkpoint, and their temporaries: a folder holding only
# these is a run killed during its first epoch, and starts over.
_BEFORE_FIRST_CHECKPOINT = re.compile(r"config\.yaml|metrics\.jsonl|modalities\.png|\.train\.lock|\.(config\.yaml|metrics\.jsonl|checkpoint\.pt|modalities\.png)\..+\.tmp")


def check_run_folder(out: Path, config: Config, resume: bool, locked_here: bool = False) -> dict | None:
    """Refuse to touch a folder holding something else, or one another training is writing into;
    return the checkpoint to resume from (None: start at epoch 1).

    A folder with no checkpoint that holds only what a run writes before its first one (the run
    was killed during its first epoch) starts over, with or without --resume. `locked_here`: this
    process holds the folder's lock."""
    check_creatable(out)
    if not locked_here and is_locked(out / RUN_LOCK):
        raise UserError(_busy(out))
    config_file, checkpoint_file = out / "config.yaml", out / "checkpoint.pt"
    if checkpoint_file.exists() or checkpoint_file.is_symlink():
        if not resume:
            if config_file.exists() and _saved_config(config_file) != config.to_dict():
                raise UserError(f"{out}: holds a different run (its config.yaml differs); choose another --out")
            raise UserError(f"{out}: already holds this run; pass --resume to continue it or choose another --out")
        state = load_checkpoint(checkpoint_file)
        if state["config"] != config.to_dict():
            raise UserError(f"{out}: the checkpoint was trained with another config; resume with the config in {config_file}")
        return state
    others = sorted(p.name for p in out.iterdir() if not _BEFORE_FIRST_CHECKPOINT.fullmatch(p.name)) if out.is_dir() else []
    if others:
        raise UserError(f"{out}: exists, is not empty and is not a spikeport run folder (it holds {others[0]} and no checkpoint.pt); choose another --out")
    if resume and not config_file.exists():
        raise UserError(f"--resume: {out} holds no checkpoint.pt to resume from")
    if resume and _saved_config(config_file) != config.to_dict():
        raise UserError(f"{out}: the run there was started with another config; resume with the config in {config_file}")
    return None


def _saved_config(path: Path) -> dict:
    return config_from_dict(read_yaml(path), source=str(path)).to_dict()


def _busy(out: Path) -> str:
    return f"{out}: another training is writing into this folder (it holds {RUN_LOCK}); wait for it to end or choose another --out"


@contextlib.contextmanager
def _holding_run_folder(out: Path) -> Iterator[None]:
    """The run folder, created if needed and locked for the block: a second training into it is
    refused. A folder created here that the run left empty (it failed before writing) is removed."""
    created = not out.exists()
    make_folder(out)
    try:
        with holding_lock(out / RUN_LOCK, _busy(out)):
            yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty


def _write_metrics(out: Path, history: list[dict]) -> None:
    write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in history))


@dataclass
class Processes:
    """This process's place among the training processes (torchrun sets the environment)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, *values: float) -> list[float]:
        """Add numbers across processes (metrics of the shards of one global batch)."""
        if self.world == 1:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(total)
        return total.tolist()


def _start_processes(device: torch.device) -> Processes:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), world)


def _global_batches(samples: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """One epoch's batches of sample indices, the same in every process: each process trains on
    its own contiguous share of every global batch."""
    order = torch.randperm(samples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return list(order.split(batch_size))


def train(config: Config, out: str | Path, device: str = "auto", resume: bool = False) -> list[dict]:
    """Train the model of `config` into run folder `out`; return the metrics, one dict per epoch.

    Under torchrun every process trains on its share of each global batch of `data.batch_size`
    samples; gradients are averaged so the update is the one-process update of that global batch
    (batch norm normalises over each process's share, as with the DTA code's DataParallel). Only
    the first process writes, holding the folder's lock (RUN_LOCK) from before its checks to the end.
    """
    out = Path(out)
    if int(os.environ.get("RANK", "0")) != 0:
        return _train(config, out, device, resume)
    with _holding_run_folder(out):
        return _train(config, out, device, resume)


def _train(config: Config, out: Path, device: str, resume: bool) -> list[dict]:
    device_ = resolve_device(device)
    procs = _start_processes(device_)
    if procs.world > 1 and device_.type == "cuda":
        device_ = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device_)
    resumed = check_run_folder(out, config, resume, locked_here=True) if procs.main else None
    if procs.world > 1:
        dist.barrier()
        if resume and not procs.main:
            resumed = load_checkpoint(out / "checkpoint.pt")
    t = config.train

    if isinstance(datasets.spec(config.data.name).input_shape, dict) and t.batch_augment != "none":
        raise UserError(f"train.batch_augment: {t.batch_augment} mixes images of one input; {config.data.name} has several inputs")
    train_set = datasets.load(config.data.name, config.data.root, "train", config.data.timesteps, options=config.data.options)
    test_set = datasets.load(config.data.name, config.data.root, "test", config.data.timesteps, options=config.data.options)
    test_loader = DataLoader(test_set, batch_size=config.data.batch_size)
    val_loader = None  # the held-out share of the training split, for tuning (datasets.VALIDATION)
    if datasets.validation_fraction(config.data.name, config.data.options):
        val_set = datasets.load(config.data.name, config.data.root, "val", config.data.timesteps, options=config.data.options)
        val_loader = DataLoader(val_set, batch_size=config.data.batch_size)

    torch.manual_seed(t.seed)
    model = model_for(config).to(device_)
    optimizer = _make_optimizer(config, model)
    schedule = (
        torch.optim.lr_scheduler.StepLR(optimizer, t.step_size, 0.1)
        if t.schedule == "step"
        else torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs)
    )
    use_amp = t.amp and device_.type == "cuda"
    scaler = torch.cuda.amp.GradScaler(enabled=use_amp)

    history: list[dict] = []
    if resumed:
        load_weights(model, resumed, out / "checkpoint.pt")
        optimizer.load_state_dict(resumed["optimizer"])
        schedule.load_state_dict(resumed["schedule"])
        scaler.load_state_dict(resumed["scaler"])
        history = list(resumed["metrics"])
        if procs.main:
            _write_metrics(out, history)  # drop lines of an epoch that was interrupted after its checkpoint
        if len(history) >= t.epochs:
            if procs.main:
                console.print(f"{out}: all {t.epochs} epochs are done already")
            return history
    elif procs.main:
        write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    trained = DistributedDataParallel(model) if procs.world > 1 else model

    with display() as bar:
        noisy = gradient_noise(model) if isinstance(model, AudioVisualSNN) else None  # how gradients are modulated
        for epoch in range(len(history), t.epochs):
            started = time.perf_counter()
            batches = _global_batches(len(train_set), config.data.batch_size, t.seed, epoch)
            task = bar.add_task(f"epoch {epoch + 1}/{t.epochs}", total=len(batches), info="", visible=procs.main)
            trained.train()
            augment = np.random.default_rng([t.seed, epoch, procs.rank])
            cutmix_epoch = t.batch_augment == "cutmix" and augment.random() < 0.5  # DTA: one coin per epoch
            loss_sum, correct, seen = 0.0, 0, 0
            balance = []  # (rho, k_audio, k_visual) per batch, for an audio-visual model
            for step, batch in enumerate(batches):
                share = batch.tensor_split(procs.world)[procs.rank]
                x, y = default_collate([train_set[int(i)] for i in share])
                y_b, lam = y, 1.0
                if cutmix_epoch:
                    x, y, y_b, lam = cutmix(x, y, 1.0, augment)
                elif t.batch_augment == "mixup":
                    x, y, y_b, lam = mixup(x, y, 0.5, augment, prob=0.5)
                    y, lam = (y, 1.0) if lam >= 0.5 else (y_b, 1.0)  # DTA trains on the mixed label's argmax
                x, y, y_b = time_major(x, device_), y.to(device_), y_b.to(device_)
                # Each loss is this share's sum over the global batch size, times the processes
                # (DDP averages gradients over them): the gradient of the global batch's mean loss.
                with torch.autocast(device_.type, enabled=use_amp):
                    output = trained(*x)
                    if isinstance(output, AVOutput):
                        # rho from the whole global batch's scores, so every process scales alike
                        balance.append(coefficients(*procs.sum(*modality_scores(output, y)), model.modulation_alpha))
                        logits = output.logits.float()
                        loss = av_loss(output, y, model.fusion, model.unimodal_weight, model.modulation, *balance[-1][1:])
                        loss = loss * len(share) * procs.world / len(batch)
                    else:
                        logits = output.float().mean(0)
                        ce = lam * nn.functional.cross_entropy(logits, y, reduction="sum")
                        if lam < 1.0:
                            ce = ce + (1 - lam) * nn.functional.cross_entropy(logits, y_b, reduction="sum")
                        loss = ce * procs.world / len(batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if noisy is not None and modulates_in(model, epoch):  # OGM(-GE): after the all-reduce, alike in every process
                    noise = torch.Generator(device_).manual_seed(t.seed * 100_003 + epoch * 10_007 + step)
                    modulate_gradients(model, *balance[-1][1:], noise=noisy, generator=noise)
                scaler.step(optimizer)
                scaler.update()
                batch_loss, batch_correct = procs.sum(loss.item() * len(batch) / procs.world, (logits.argmax(1) == y).sum().item())
                loss_sum += batch_loss
                correct += int(batch_correct)
                seen += len(batch)
                bar.update(task, advance=1, info=f"loss {loss_sum / seen:.4f}  acc {correct / seen:.3f}")
            bar.remove_task(task)
            metrics = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen}
            if val_loader is not None:
                metrics["val_acc"] = evaluate(model, val_loader, device_)[1]
            if isinstance(model, AudioVisualSNN):
                modalities = evaluate_modalities(model, test_loader, device_)
                rho, k_audio, k_visual = np.mean(balance, axis=0).tolist()
                metrics |= {"test_acc": modalities["acc_fused"], **modalities, "rho": rho, "k_audio": k_audio, "k_visual": k_visual}
            else:
                metrics["test_acc"] = evaluate(model, test_loader, device_)[1]
            metrics |= {"lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - started, 3)}
            test_acc = metrics["test_acc"]
            schedule.step()
            history.append(metrics)
            if procs.main:
                save_checkpoint(
                    out / "checkpoint.pt",
                    {
                        "config": config.to_dict(),
                        "epochs_done": epoch + 1,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "scaler": scaler.state_dict(),
                        "metrics": history,
                    },
                )
                _write_metrics(out, history)
                if isinstance(model, AudioVisualSNN):
                    plot_modalities(history, out / "modalities.png", title=f"{config.model['name']} ({model.fusion}) on {config.data.name}")
                console.print(
                    f"epoch {epoch + 1}/{t.epochs}  loss {metrics['train_loss']:.4f}  "
                    f"train acc {metrics['train_acc']:.3f}  test acc {test_acc:.3f}  ({metrics['seconds']:.1f} s)"
                )
    return history
