#!/usr/bin/env bash
# Prepare, on this machine, what benchmarks/gpu_suite.py needs on a lent GPU machine that cannot
# download: the peers' wheels in .whl/ and the Fashion-MNIST IDX files in .gpu_data/ (both ignored
# by git, both carried by the device tool). Then prints the one command to run there.
#
#   bash benchmarks/gpu_prepare.sh [IDX_DIR]     # IDX_DIR: default /usr/share/datasets/fashion-mnist
set -euo pipefail
cd "$(dirname "$0")/.."
idx="${1:-/usr/share/datasets/fashion-mnist}"
for path in /.whl/ /.gpu_data/; do grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude; done
mkdir -p .whl .gpu_data/fashion_mnist
cp "$idx"/*-ubyte* .gpu_data/fashion_mnist/
# The GPU image has torch, jax, flax, optax, h5py, tqdm, absl, protobuf (its page in the device tool);
# these are what the peers add. Python 3.12 on x86-64 there.
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl snntorch==1.0.0 spyx==1.0.0 nir nirtorch jax-tqdm grain array-record portpicker
python3 -m pip wheel -q --no-deps norse==1.1.0 -w .whl   # a pure-Python wheel built from its source
du -sh .whl .gpu_data
cat <<'CMD'
On the GPU (device tool: carry [".whl", ".gpu_data"], timeout_s 600):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site && PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py --data-dir .gpu_data/fashion_mnist --copy-to $OUT 2>&1 | tee $OUT/gpu_suite.log
CMD
