"""A host partition as a Lava process: its ONNX subgraph run by ONNX Runtime on buffered timesteps.

A chip streams one timestep per step, but a host partition's ONNX file maps a whole [T, B, ...]
sequence (export/onnx.py: T fixed, B dynamic), and a non-causal one (attention over all T) cannot
produce timestep 0 before it has seen timestep T - 1. `HostPartition` therefore receives the
boundary tensor on `x_in` every Lava step, keeps each sample's timesteps, and runs the ONNX file
when the output it must send next depends on nothing it has not received yet:

- the manifest's `buffer_timesteps` b says how late that is: output timestep i of a sample leaves
  on `y_out` in the step in which input timestep i + b arrives (or would arrive: past the sample's
  last timestep the count goes on). b = T (attention over all T): the sample's T outputs leave in
  the T steps after its last input arrived, from one ONNX run; the partition adds b steps of
  latency, which the runner removes and reports as part of `delay`, as the timing report adds the
  buffer. b = 0 (causal, measured by the exporter): timestep i leaves in the step it arrived, from
  an ONNX run on timesteps 0..i with the later ones zero, which cannot change it.
- `offset` is the Lava step, minus one, in which the sample stream's first timestep arrives (the
  synaptic stages in front of the partition); steps before it and after the stream's last
  timestep carry zeros, as does `y_out` while no output is due.

Tensors travel in Lava's layout ((W, H, C) for a map, see lava_runner) and are fed to ONNX Runtime
in NIR's (C, H, W). Only the float models exist (`floating_pt`): a host computes in float.

This module imports Lava at its top, and Lava's compiler finds the process model here by scanning
the process's module, so it is imported only through `lava_runner._lava_api` (after Lava's own
start-method setup), never at package import.
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

from spikeport.runtime.lava_runner import _lava, _lava_shape


class HostPartition(AbstractProcess):
    """The Lava process of one host partition with one input and one output tensor.

    onnx: the partition's ONNX file; input_name / output_name: its tensors (the manifest's);
    input_shape / output_shape: per sample, in NIR's order; timesteps: T; buffer: the manifest's
    buffer_timesteps; offset: see the module docstring; samples: how many samples the stream holds.
    """

    def __init__(self, *, onnx: str, input_name: str, output_name: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
                 timesteps: int, buffer: int, offset: int, samples: int, name: str | None = None) -> None:
        super().__init__(onnx=onnx, input_name=input_name, output_name=output_name, input_shape=input_shape, output_shape=output_shape,
                         timesteps=timesteps, buffer=buffer, offset=offset, samples=samples, name=name)
        self.x_in = InPort(shape=_lava_shape(input_shape))
        self.y_out = OutPort(shape=_lava_shape(output_shape))


@implements(proc=HostPartition, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyHostPartitionModel(PyLoihiProcessModel):
    """Buffers each sample's timesteps and sends the ONNX outputs `buffer` steps later (module docstring)."""

    x_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    y_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.onnx, self.input_name, self.output_name = proc_params["onnx"], proc_params["input_name"], proc_params["output_name"]
        self.input_shape = tuple(proc_params["input_shape"])
        self.timesteps, self.buffer = proc_params["timesteps"], proc_params["buffer"]
        self.offset, self.samples = proc_params["offset"], proc_params["samples"]
        self.session: onnxruntime.InferenceSession | None = None  # opened in the step that first needs it, in this model's process
        self.frames: dict[int, np.ndarray] = {}  # sample -> its timesteps received so far, [T, *input_shape], zeros after
        self.computed: tuple[int, int, np.ndarray] | None = None  # (sample, timesteps seen, ONNX outputs [T, *output_shape])

    def run_spk(self) -> None:
        x = self.x_in.recv()
        position = self.time_step - 1 - self.offset  # which timestep of the stream arrives now
        stream = self.samples * self.timesteps
        if 0 <= position < stream:
            sample, t = divmod(position, self.timesteps)
            self.frames.setdefault(sample, np.zeros((self.timesteps, *self.input_shape), dtype=np.float32))[t] = _lava(x)
        due = position - self.buffer  # which output timestep leaves now
        if not 0 <= due < stream:
            self.y_out.send(np.zeros(self.y_out.shape))
            return
        sample, t = divmod(due, self.timesteps)
        seen = min(self.timesteps, position - sample * self.timesteps + 1)
        if self.computed is None or self.computed[:2] != (sample, seen):
            self.computed = (sample, seen, self._run(self.frames[sample]))
        self.y_out.send(_lava(self.computed[2][t]))
        if t == self.timesteps - 1:
            del self.frames[sample]

    def _run(self, frames: np.ndarray) -> np.ndarray:
        """The ONNX file on one sample's timesteps [T, *input_shape] -> [T, *output_shape]."""
        if self.session is None:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1  # one of many Lava processes: no thread pool each
            self.session = onnxruntime.InferenceSession(self.onnx, options, providers=["CPUExecutionProvider"])
        (y,) = self.session.run([self.output_name], {self.input_name: frames[:, None]})
        return y[:, 0]

