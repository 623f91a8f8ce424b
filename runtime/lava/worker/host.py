"""A host partition as a Lava process: its ONNX subgraph run by ONNX Runtime on buffered timesteps.

A chip streams one timestep per step, but a host partition's ONNX file maps a whole [T, B, ...]
sequence per input (export/onnx.py: T fixed, B dynamic), and a non-causal one (attention over all
T) cannot produce timestep 0 before it has seen timestep T - 1. `HostPartition` therefore receives
each input tensor on an InPort of its own (`x_in0`, `x_in1`, ...) every Lava step, keeps each
sample's timesteps, and runs the ONNX file when the outputs it must send next (each on an OutPort
of its own, `y_out0`, ...) depend on nothing it has not received yet:

- the manifest's `buffer_timesteps` b says how late that is: output timestep i of a sample leaves
  on the OutPorts in the step in which input timestep i + b arrives (or would arrive: past the sample's
  last timestep the count goes on). b = T (attention over all T): the sample's T outputs leave in
  the T steps after its last input arrived, from one ONNX run; the partition adds b steps of
  latency, which the runner removes and reports as part of `delay`, as the timing report adds the
  buffer. b = 0 (causal, measured by the exporter): timestep i leaves in the step it arrived, from
  an ONNX run on timesteps 0..i with the later ones zero, which cannot change it.
- `offset` is the Lava step, minus one, in which the sample stream's first timestep arrives (the
  synaptic stages in front of the partition); steps before it and after the stream's last
  timestep carry zeros, as do the OutPorts while no output is due.

A Lava process model declares its ports in its class, so the process has MAX_TENSORS of each;
those beyond the partition's tensors stay unconnected (one element each, never read or sent).

Tensors travel in Lava's layout ((W, H, C) for a map, layout.py) and are fed to ONNX Runtime
in NIR's (C, H, W). A host computes in float; in `fixed_pt` (Loihi fixed point) it exchanges
integers with the chip: each graded tensor it receives is a payload in the units loihi.json's
boundary gives (`payload.from_payload`: int / scale, plus the bias a synaptic layer leaves to
the host), each one it sends the chip is `payload.to_payload` (round(x * scale), saturated to
the payload's bits), spikes stay 0/1, and a tensor no chip reads (the model's output) leaves as its
float32 bits in the int32 port, which the runner reads back exactly. The emulator
(runtime/loihi_fixed.py) calls the same two functions, so both compute the same numbers.

Lava's compiler finds the process models here, in the process's own module. It then executes
every other module of this folder on its own while it looks for more, so none of them may do
anything at import.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from layout import lava_order, lava_shape
from payload import from_payload, to_payload


MAX_TENSORS = 4  # inputs, and outputs, of one host partition


class HostPartition(AbstractProcess):
    """The Lava process of one host partition.

    onnx: the partition's ONNX file; inputs / outputs: its tensors, name -> shape per sample in
    NIR's order (the manifest's, in its order), on x_in0, ... and y_out0, ...; timesteps: T;
    buffer: the manifest's buffer_timesteps; offset: see the module docstring; samples: how many
    samples the stream holds; biases: per input that is a synaptic layer's current, its bias
    (NIR's order), added to each timestep as it arrives (Lava's Dense and Conv have none);
    payloads: fixed point only, per boundary tensor its loihi.json entry (module docstring).
    """

    def __init__(self, *, onnx: str, inputs: dict[str, tuple[int, ...]], outputs: dict[str, tuple[int, ...]],
                 timesteps: int, buffer: int, offset: int, samples: int, biases: dict[str, np.ndarray], payloads: dict[str, dict] | None = None,
                 name: str | None = None) -> None:
        if len(inputs) > MAX_TENSORS or len(outputs) > MAX_TENSORS:
            raise ValueError(f"host partition {name}: {len(inputs)} inputs and {len(outputs)} outputs; the Lava process takes {MAX_TENSORS} of each")
        super().__init__(onnx=onnx, inputs=dict(inputs), outputs=dict(outputs), timesteps=timesteps, buffer=buffer, offset=offset,
                         samples=samples, biases=dict(biases), payloads=dict(payloads or {}), name=name)
        in_shapes, out_shapes = list(inputs.values()), list(outputs.values())
        for i in range(MAX_TENSORS):
            setattr(self, f"x_in{i}", InPort(shape=lava_shape(in_shapes[i]) if i < len(in_shapes) else (1,)))
            setattr(self, f"y_out{i}", OutPort(shape=lava_shape(out_shapes[i]) if i < len(out_shapes) else (1,)))
        self.x_in = [getattr(self, f"x_in{i}") for i in range(len(in_shapes))]  # the ports in use, in the order of `inputs`
        self.y_out = [getattr(self, f"y_out{i}") for i in range(len(out_shapes))]


@implements(proc=HostPartition, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyHostPartitionModel(PyLoihiProcessModel):
    """Buffers each sample's timesteps and sends the ONNX outputs `buffer` steps later (module docstring)."""

    message_type = np.float64

    x_in0: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    x_in1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    x_in2: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    x_in3: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    y_out0: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y_out1: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y_out2: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y_out3: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.onnx = proc_params["onnx"]
        self.inputs = {name: tuple(shape) for name, shape in proc_params["inputs"].items()}
        self.outputs = list(proc_params["outputs"])
        self.timesteps, self.buffer = proc_params["timesteps"], proc_params["buffer"]
        self.offset, self.samples = proc_params["offset"], proc_params["samples"]
        self.biases = proc_params["biases"]
        self.payloads = dict(proc_params["payloads"])  # tensor -> its loihi.json boundary, as a dict (payload.py)
        self.session: onnxruntime.InferenceSession | None = None  # opened in the step that first needs it, in this model's process
        self.frames: dict[int, dict[str, np.ndarray]] = {}  # sample -> per input its timesteps received so far, [T, *shape], zeros after
        self.computed: tuple[int, int, list[np.ndarray]] | None = None  # (sample, timesteps seen, ONNX outputs [T, *shape] each)

    def run_spk(self) -> None:
        received = {name: getattr(self, f"x_in{i}").recv() for i, name in enumerate(self.inputs)}
        out_ports = [getattr(self, f"y_out{i}") for i in range(len(self.outputs))]
        position = self.time_step - 1 - self.offset  # which timestep of the stream arrives now
        stream = self.samples * self.timesteps
        if 0 <= position < stream:
            sample, t = divmod(position, self.timesteps)
            frames = self.frames.setdefault(sample, {name: np.zeros((self.timesteps, *shape), dtype=np.float32) for name, shape in self.inputs.items()})
            for name, x in received.items():
                frames[name][t] = self._receive(name, lava_order(x))
        due = position - self.buffer  # which output timestep leaves now
        if not 0 <= due < stream:
            for port in out_ports:
                port.send(np.zeros(port.shape, dtype=self.message_type))
            return
        sample, t = divmod(due, self.timesteps)
        seen = min(self.timesteps, position - sample * self.timesteps + 1)
        if self.computed is None or self.computed[:2] != (sample, seen):
            self.computed = (sample, seen, self._run(self.frames[sample]))
        for name, port, y in zip(self.outputs, out_ports, self.computed[2]):
            port.send(lava_order(self._send(name, y[t])))
        if t == self.timesteps - 1:
            del self.frames[sample]

    def _receive(self, name: str, x: np.ndarray) -> np.ndarray:
        return x + self.biases.get(name, 0)

    def _send(self, name: str, y: np.ndarray) -> np.ndarray:
        return y

    def _run(self, frames: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The ONNX file on one sample's timesteps, [T, *shape] per input -> [T, *shape] per output."""
        if self.session is None:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1  # one of many Lava processes: no thread pool each
            self.session = onnxruntime.InferenceSession(self.onnx, options, providers=["CPUExecutionProvider"])
        outputs = self.session.run(self.outputs, {name: x[:, None] for name, x in frames.items()})
        return [y[:, 0] for y in outputs]


@implements(proc=HostPartition, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyHostPartitionModelFixed(PyHostPartitionModel):
    """The same buffering, exchanging Loihi integers with the chip (module docstring)."""

    message_type = np.int32

    x_in0: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    x_in1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    x_in2: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    x_in3: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    y_out0: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    y_out1: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    y_out2: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    y_out3: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def _receive(self, name: str, x: np.ndarray) -> np.ndarray:
        return from_payload(x, self.payloads[name], self.biases.get(name, 0.0))

    def _send(self, name: str, y: np.ndarray) -> np.ndarray:
        if name in self.payloads:
            return to_payload(y, self.payloads[name])
        return np.ascontiguousarray(y, dtype=np.float32).view(np.int32)  # no chip reads it: its float32 bits
