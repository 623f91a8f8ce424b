#!/usr/bin/env bash
# Issue 18's CUDA rows, for a machine with an NVIDIA GPU: the Triton kernels' equality on the GPU,
# one LIF layer against SpikingJelly's CUDA and Triton kernels, and the training steps (the digits
# CNN, the 64/128/256 CNN, the small DTA network and DTA_SNN_18) with torch.compile beside the
# kernel, SpikingJelly with its CUDA kernels and then its Triton ones. JSON into
# benchmarks/results/<gpu name>/ (or OUT). About 8 minutes on an H200 (estimated: not run yet).
#
#     bash benchmarks/cuda_rows.sh [kernels] [steps] [dta]      # all three parts by default
#
# On a GPU machine without network that has torch and Triton (an offline cluster, a borrowed
# machine): `make gpu-wheels` here puts spikeport and what it needs beyond torch into .whl/; copy
# the checkout there and run, from its root,
#
#     python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#     PYTHONPATH=/tmp/site PYTHON=python3 bash benchmarks/cuda_rows.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python}
gpu=$("$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name().lower().replace(' ', '-'))")
out=${OUT:-$root/benchmarks/results/$gpu}
mkdir -p "$out"
parts=${*:-kernels steps dta}
note="cuda_rows.sh on $gpu"
for part in $parts; do
  case $part in
    kernels)
      # pytest from outside the checkout, so that `import spikeport` is the installed package
      (cd /tmp && "$python" -m pytest -q -p no:cacheprovider "$root/tests/test_lif_triton.py")
      for impl in cuda triton; do
        SJ_LIF_CUDA_IMPLEMENTATION=$impl "$python" benchmarks/lif_kernel.py --device cuda --note "$note" --output "$out/lif_kernel_sj-$impl.json"
      done ;;
    steps)
      SJ_LIF_CUDA_IMPLEMENTATION=cuda "$python" benchmarks/train_step.py --device cuda --compile --note "$note, SpikingJelly's CUDA kernels" --output "$out/train_step.json" > /dev/null ;;
    dta)
      for impl in cuda triton; do
        SJ_LIF_CUDA_IMPLEMENTATION=$impl "$python" benchmarks/dta_train_step.py --device cuda --compile --note "$note, SpikingJelly's $impl kernels" --output "$out/dta_train_step_sj-$impl.json"
      done
      SJ_LIF_CUDA_IMPLEMENTATION=cuda "$python" benchmarks/dta_train_step.py --device cuda --compile --full --note "$note, DTA_SNN_18, SpikingJelly's CUDA kernels" --output "$out/dta_train_step_full.json" ;;
    *) echo "cuda_rows.sh: unknown part '$part' (kernels, steps or dta)" >&2; exit 2 ;;
  esac
done
echo "results in $out"
