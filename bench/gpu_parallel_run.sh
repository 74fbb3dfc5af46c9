#!/usr/bin/env bash
# The multi-GPU measurement on a 4-GPU host, in one go (see bench/gpu_parallel.py). Rows go to $OUT as they come.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp}; ROWS=$OUT/parallel_rows.jsonl; REF=/tmp/wanray_parallel_ref.pt; rm -f "$ROWS" "$REF"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
common="--rows $ROWS --reference $REF --repeats 1 --vae"
CUDA_VISIBLE_DEVICES=0 torchrun --nproc-per-node 1 bench/gpu_parallel.py --ulysses 1 --cfg 1 $common
CUDA_VISIBLE_DEVICES=0,1 torchrun --nproc-per-node 2 bench/gpu_parallel.py --ulysses 2 --cfg 1 $common
torchrun --nproc-per-node 4 bench/gpu_parallel.py --ulysses 4 --cfg 1 $common
torchrun --nproc-per-node 4 bench/gpu_parallel.py --ulysses 2 --cfg 2 $common
python3 bench/gpu_parallel.py --report "$ROWS"
