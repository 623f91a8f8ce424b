"""Models that users bring: an snnTorch `nn.Module` -> spikeport's multi-step chain, checked equal.

snnTorch models step one timestep at a time, and their `forward` is ordinary Python (a loop over
steps, states passed by hand), which torch.fx cannot trace. So the structure is read the way the
model runs: forward hooks on its leaf modules record, for one run on an example input, which module
is called in which order and which tensor each one reads. A model whose calls form a chain (each
module reads what the one before it produced, maybe flattened) becomes the equivalent chain of
spikeport's multi-step layers, which the exporter already takes. Then both run on the example and
every neuron layer's spikes must be equal, step for step, or the model is refused: an export never
silently computes something else than the user's model.

Two ways of running a model are understood, those of the snnTorch tutorials:
- an `nn.Sequential` of layers and neurons built with `init_hidden=True`, called once per step
  (`spk = net(x[t])`), and
- any module whose `forward(x)` loops over the steps itself, on x of shape [T, B, *input_shape]
  (`for step in range(x.shape[0]): cur = self.fc1(x[step]) ...`), or on a static x of shape
  [B, *input_shape] presented at every step.

Mapped: Conv2d, Linear, AvgPool2d, MaxPool2d, Flatten, BatchNorm1d/2d (folded into the layer
before it), Dropout and Identity (dropped); and snnTorch's neurons, with each reset mechanism and
reset_delay as snnTorch computes them (train/neuron.py), learnable or fixed, with one beta (alpha)
and one threshold per layer: `snn.Leaky` -> LIF, `snn.Synaptic` -> CubaLIF, `snn.RLeaky` ->
RecurrentLIF and `snn.RSynaptic` -> CubaLIF with its recurrent connection (its Linear or Conv2d,
or the one-to-one V as a diagonal). A recurrent neuron is still one call per step that
reads the module before it: its recurrence is inside the module. Anything else is refused with
one line naming the module's path and what is wrong.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeport.errors import UserError
from spikeport.train import layers
from spikeport.train.neuron import LIF, CubaLIF, RecurrentLIF

EXAMPLE_BATCH = 4  # samples of the example run that the structure is read from and checked on
DROPPED = (nn.Dropout, nn.Identity)
_SNNTORCH_NAMES = {LIF: "leaky", CubaLIF: "synaptic", RecurrentLIF: "rleaky"}  # a Sequential's child 2 -> "leaky_2"


@dataclass
class Call:
    """One call of a leaf module during the example run."""

    path: str  # the module's name in the model, e.g. "features.0"
    module: nn.Module
    reads: Tensor
    produced: Tensor  # its output (a neuron's spikes)


def _snntorch():
    try:
        import snntorch
        import snntorch.utils  # noqa: F401 - reset() of the hidden states; not imported by the package
    except ImportError:  # pragma: no cover - snnTorch is a dependency
        raise UserError("exporting an snnTorch model needs snntorch installed (pip install snntorch)") from None
    return snntorch


def convert(model: nn.Module, input_shape: tuple[int, ...], timesteps: int, seed: int = 0) -> nn.Sequential:
    """The user's model as a chain of spikeport's multi-step layers, over [T, B, *input_shape].

    The chain's spikes are checked equal to the model's on a random example before it is returned.
    """
    snn = _snntorch()
    if not isinstance(model, nn.Module):
        raise UserError(f"model: expected a torch nn.Module, got {type(model).__name__}")
    _check_shape(input_shape, timesteps)
    model = copy.deepcopy(model).cpu().eval()  # the user's model keeps its hidden states and mode
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(timesteps, EXAMPLE_BATCH, *input_shape, generator=generator) < 0.3).float() * 2.0
    calls, static = _record(model, x, snn)
    per_step = _one_step(calls, timesteps, static)
    chain = nn.Sequential(_named(_chain(per_step, x[0], snn)))
    _check_equal(chain, calls, x[:1].expand_as(x) if static else x, per_step, snn)
    return chain


def off_chip(chain: nn.Sequential) -> list[str]:
    """One line per neuron layer of a converted chain that no Loihi target computes, naming it
    and why: the export then writes NIR and ONNX only, which the reference runtime runs."""
    lines = []
    for name, m in chain.named_children():
        if isinstance(m, CubaLIF):
            kind = "snn.RSynaptic" if m.recurrent is not None else "snn.Synaptic"
            lines.append(f"{name} ({kind}): a current-based (CubaLIF) neuron has no Loihi mapping in spikeport (Lava and Loihi run its LIF without a synaptic decay here)")
        elif isinstance(m, RecurrentLIF):
            lines.append(f"{name} (snn.RLeaky): a recurrent connection has no Loihi mapping in spikeport")
        elif isinstance(m, LIF) and not m.resets_to_zero_at_once:
            lines.append(
                f"{name} (snn.Leaky): reset_mechanism={m.reset!r}" + (", reset_delay=True" if m.reset_delay else "")
                + " has no Loihi equivalent (Loihi's LIF resets to zero at once); use reset_mechanism='zero'"
            )
    return lines


def _check_shape(input_shape, timesteps) -> None:
    if not (isinstance(input_shape, (tuple, list)) and input_shape and all(isinstance(n, int) and n > 0 for n in input_shape)):
        raise UserError(f"input_shape: expected the shape of one sample at one timestep, e.g. (1, 28, 28), got {input_shape!r}")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise UserError(f"timesteps: expected a positive integer, got {timesteps!r}")


def _leaves(model: nn.Module, snn) -> dict[nn.Module, str]:
    """Modules the hooks watch: those without children, and snnTorch neurons (which have some)."""
    found = {}
    for path, module in model.named_modules():
        if isinstance(module, snn.SpikingNeuron) or not list(module.children()):
            if not any(path.startswith(p + ".") for p in found.values() if p):
                found[module] = path or type(module).__name__
    return found


def _record(model: nn.Module, x: Tensor, snn) -> tuple[list[Call], bool]:
    """Run the model on x (per step for a Sequential, else through its forward) under hooks;
    return the calls and whether the forward took a static input (x[0] at every step)."""
    leaves = _leaves(model, snn)
    calls: list[Call] = []

    def hook(module, args, output):
        produced = output[0] if isinstance(output, tuple) else output
        if args and isinstance(args[0], Tensor) and isinstance(produced, Tensor):
            calls.append(Call(leaves[module], module, args[0], produced))

    handles = [module.register_forward_hook(hook) for module in leaves]
    try:
        with torch.no_grad():
            _snntorch().utils.reset(model)
            try:
                if isinstance(model, nn.Sequential):  # stepped by the caller, one [B, ...] step at a time
                    for t in range(x.shape[0]):
                        model(x[t])
                else:
                    model(x)
                return calls, False
            except Exception as time_first:  # maybe a forward that takes a static [B, ...] input
                if isinstance(model, nn.Sequential):
                    raise UserError(f"model (Sequential): fails on a step of shape {tuple(x.shape[1:])} = [B, *input_shape] ({_first_line(time_first)})") from None
                calls.clear()
                try:
                    _snntorch().utils.reset(model)
                    model(x[0])
                except Exception:
                    raise UserError(
                        f"model ({type(model).__name__}): its forward fails on an input of shape [T, B, *input_shape] "
                        f"({_first_line(time_first)}) and on a static [B, *input_shape]"
                    ) from None
                return calls, True
    finally:
        for handle in handles:
            handle.remove()


def _one_step(calls: list[Call], timesteps: int, static: bool) -> list[Call]:
    """The calls of the first timestep: the forward repeats the same chain T times."""
    if not calls:
        raise UserError("model: its forward called no layer on the input")
    if len(calls) % timesteps:
        raise UserError(
            f"model: its forward made {len(calls)} layer calls, not a multiple of timesteps={timesteps}"
            + (" (a forward with a static input runs its own number of steps: give that as timesteps)" if static else "")
        )
    n = len(calls) // timesteps
    step = calls[:n]
    for t in range(1, timesteps):
        later = [c.path for c in calls[t * n : (t + 1) * n]]
        if later != [c.path for c in step]:
            raise UserError(f"model: step {t} calls {', '.join(later)}, step 0 {', '.join(c.path for c in step)}: the forward is not one chain per step")
    return step


def _is_view_of(tensor: Tensor, source: Tensor) -> bool:
    """`tensor` holds `source`'s values, perhaps reshaped (a view, or a copy equal in value)."""
    if tensor.numel() != source.numel() or tensor.shape[0] != source.shape[0]:
        return False
    return tensor is source or (tensor.data_ptr() == source.data_ptr()) or torch.equal(tensor.reshape(-1), source.reshape(-1))


def _named(modules: list[tuple[str, nn.Module]]) -> OrderedDict:
    """The chain's modules under the user's module paths ("features.0" -> "features_0"), so that
    the exported graph, the simulation and the report name layers as the user's model does."""
    named: OrderedDict = OrderedDict()
    for path, module in modules:
        name = path.replace(".", "_")
        if name[0].isdigit():  # a Sequential's child: "2" -> "leaky_2"
            name = f"{_SNNTORCH_NAMES.get(type(module), type(module).__name__).lower()}_{name}"
        while name in named:
            name += "_"
        named[name] = module
    return named


def _chain(step: list[Call], first: Tensor, snn) -> list[tuple[str, nn.Module]]:
    """spikeport's layers for the calls of one step (the first reading `first`, the input at step
    0), each reading what the one before produced."""
    chain: list[tuple[str, nn.Module]] = []
    previous = first
    for call in step:
        if not _is_view_of(call.reads, previous):
            raise UserError(
                f"{call.path} ({type(call.module).__name__}): reads a tensor that "
                + ("is not the model's input" if previous is first else "the module before it did not produce")
                + "; only chains of layers and neurons (no residual or recurrent paths) are exported from snnTorch"
            )
        if call.reads.shape != previous.shape:
            if call.reads.dim() != 2:
                raise UserError(f"{call.path} ({type(call.module).__name__}): reads its input reshaped to {tuple(call.reads.shape)}; only a flatten to [B, features] is mapped")
            chain.append((f"flatten_{call.path}", layers.Flatten()))
        mapped = _map(call, [m for _, m in chain], snn)
        if mapped is not None:
            chain.append((call.path, mapped))
        previous = call.produced
    return chain


def _map(call: Call, chain: list[nn.Module], snn) -> nn.Module | None:
    m, where = call.module, f"{call.path} ({type(call.module).__name__})"
    if isinstance(m, snn.SpikingNeuron):
        return _neuron(m, where, tuple(call.reads.shape[1:]), snn)
    if isinstance(m, DROPPED):
        return None
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        _fold_batch_norm(m, chain, where)
        return None
    if type(m) is nn.Conv2d:
        conv = layers.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups, m.bias is not None, m.padding_mode)
        conv.load_state_dict(m.state_dict())
        return conv
    if type(m) is nn.Linear:
        return copy.deepcopy(m)
    if type(m) is nn.AvgPool2d:
        return layers.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)
    if type(m) is nn.MaxPool2d:
        return layers.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode)
    if type(m) is nn.Flatten:
        if m.end_dim != -1 or m.start_dim not in (1, -call.reads.dim() + 1):
            raise UserError(f"{where}: flattens dims {m.start_dim}..{m.end_dim}; only a flatten of everything after the batch is mapped")
        return layers.Flatten()
    raise UserError(f"{where}: no spikeport layer for it; mapped are Conv2d, Linear, AvgPool2d, MaxPool2d, Flatten, BatchNorm, Dropout and snnTorch's Leaky, Synaptic, RLeaky, RSynaptic")


def _scalar(value, name: str, where: str) -> float:
    tensor = torch.as_tensor(value).detach().float()
    if tensor.numel() != 1:
        raise UserError(f"{where}: {name} has {tensor.numel()} values (one per neuron); chips have one {name} per layer, so one value is needed")
    return float(tensor.reshape(()))


def _neuron(m: nn.Module, where: str, shape: tuple[int, ...], snn) -> LIF:
    """The spikeport neuron computing `m`, one of snnTorch's Leaky, Synaptic, RLeaky, RSynaptic."""
    if type(m) not in (snn.Leaky, snn.Synaptic, snn.RLeaky, snn.RSynaptic):
        raise UserError(f"{where}: no spikeport neuron for it; mapped are snn.Leaky, snn.Synaptic, snn.RLeaky and snn.RSynaptic")
    for setting, bad in (("inhibition", m.inhibition), ("state_quant", bool(m.state_quant))):
        if bad:
            raise UserError(f"{where}: {setting} is set; no deployment target computes it")
    if _scalar(m.graded_spikes_factor, "graded_spikes_factor", where) != 1.0:
        raise UserError(f"{where}: graded_spikes_factor={float(m.graded_spikes_factor)}; neuromorphic targets send binary spikes")
    beta = _decay(m.beta, "beta", where)
    threshold = _scalar(m.threshold, "threshold", where)
    if not threshold > 0:
        raise UserError(f"{where}: threshold={threshold}; a spike threshold must be positive")
    if type(m) is snn.Leaky:
        return LIF(beta, threshold, reset=m.reset_mechanism, reset_delay=m.reset_delay)
    # snnTorch 1.0.0's RSynaptic applies no immediate reset: with reset_delay=False its forward
    # resets the spk/mem arguments it was given, not its state, so it computes the delayed rule.
    delay = m.reset_delay or type(m) is snn.RSynaptic
    recurrent = _recurrent(m, where, shape) if type(m) in (snn.RLeaky, snn.RSynaptic) else None
    if type(m) is snn.RLeaky:
        return RecurrentLIF(beta, recurrent, threshold, m.reset_mechanism, delay)
    alpha = _decay(m.alpha, "alpha", where)
    for name, decay in (("alpha", alpha), ("beta", beta)):
        if decay == 1.0:  # a LIF without leak is NIR's IF; a CubaLIF has no such form
            raise UserError(f"{where}: {name}=1, a state that never decays: NIR's CubaLIF has no infinite time constant")
    return CubaLIF(alpha, beta, threshold, m.reset_mechanism, delay, recurrent)


def _decay(value, name: str, where: str) -> float:
    return min(max(_scalar(value, name, where), 0.0), 1.0)  # snnTorch clamps its decays to [0, 1] every step


def _recurrent(m: nn.Module, where: str, shape: tuple[int, ...]) -> nn.Linear | nn.Conv2d:
    """The recurrent connection of an RLeaky/RSynaptic over the layer's neurons [B, *shape]: its own
    Linear (linear_features) or Conv2d (conv2d_channels, kernel_size), or the one-to-one weights V
    as the diagonal of a Linear (the form snnTorch's export_to_nir writes and its import_nir reads
    back as V), or for [C, H, W] neurons one V as a 1x1 convolution V * identity. A sum with zeros
    is exact, so each computes V * s to the bit."""
    if m.all_to_all:
        if (type(m.recurrent), len(shape)) in ((nn.Linear, 1), (nn.Conv2d, 3)):
            return copy.deepcopy(m.recurrent)
        raise UserError(f"{where}: its recurrent {type(m.recurrent).__name__} over neurons of shape {shape}; only a Linear over a flat layer or a Conv2d over [C, H, W] is exported")
    v = torch.as_tensor(m.recurrent.V).detach().float()  # one value, or one per neuron (else the model failed to run)
    if len(shape) == 1:
        linear = nn.Linear(shape[0], shape[0], bias=False)
        linear.weight = nn.Parameter(torch.diag(v.reshape(-1).expand(shape[0]).clone()))
        return linear
    if len(shape) == 3 and v.numel() == 1:
        conv = nn.Conv2d(shape[0], shape[0], 1, bias=False)
        conv.weight = nn.Parameter((v.reshape(()) * torch.eye(shape[0])).reshape(shape[0], shape[0], 1, 1))
        return conv
    raise UserError(f"{where}: V has {v.numel()} values over neurons of shape {shape}; one-to-one weights are exported over a flat layer, or as one value over [C, H, W]")


def _fold_batch_norm(bn: nn.Module, chain: list[nn.Module], where: str) -> None:
    """Fold an eval-mode batch norm into the Conv2d or Linear just before it (in float64)."""
    layer = chain[-1] if chain else None
    if not isinstance(layer, (nn.Conv2d, nn.Linear)) or (bn.num_features != (layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features)):
        raise UserError(f"{where}: a batch norm is folded into the Conv2d or Linear right before it, and there is none")
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = (bn.bias.double() if bn.affine else 0) - bn.running_mean.double() * scale
    weight = layer.weight.double() * scale.reshape(-1, *[1] * (layer.weight.dim() - 1))
    bias = (layer.bias.double() * scale if layer.bias is not None else 0) + shift
    layer.weight = nn.Parameter(weight.float())
    layer.bias = nn.Parameter(bias.float())


def _check_equal(chain: nn.Sequential, calls: list[Call], x: Tensor, step: list[Call], snn) -> None:
    """Every neuron layer of the chain spikes as the user's model did, at every step."""
    chain.eval()
    with torch.no_grad():
        outputs, h = [], x
        for module in chain:
            h = module(h)
            outputs.append(h)
    ours = [out for module, out in zip(chain, outputs) if isinstance(module, LIF)]
    theirs = [c.path for c in step if isinstance(c.module, snn.SpikingNeuron)]
    kinds = {c.path: f"snn.{type(c.module).__name__}" for c in step}
    for name, spikes in zip(theirs, ours):
        recorded = torch.stack([c.produced for c in calls if c.path == name])
        if recorded.shape != spikes.shape or not torch.equal(recorded, spikes):
            differ = f"{int((recorded != spikes).sum())} of {spikes.numel()}" if recorded.shape == spikes.shape else f"shape {tuple(recorded.shape)}"
            raise UserError(f"{name} ({kinds[name]}): the exported chain's spikes differ from the model's ({differ}); its forward computes something the chain does not")


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]
