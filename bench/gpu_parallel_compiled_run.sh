#!/usr/bin/env bash
# torch.compile, FP8 linears and FP8 attention under Ulysses + CFG parallel on a 4-GPU host, against eager bf16 in
# the same run.
#   OUT=/tmp/out bash bench/gpu_parallel_compiled_run.sh [VARIANT...]
#   VARIANT: eager | compile | compile-fp8 (FP8 linears) | compile-fp8-all (FP8 linears + cuDNN FP8 attention)
# The first variant is the speed-up and error reference; default "eager compile-fp8". Layout: LAYOUT="2 2"
# (Ulysses 2 x CFG 2, the fastest eager one) or e.g. LAYOUT="4 1". Rows go to $OUT as they come.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp}; ROWS=$OUT/parallel_compiled_rows.jsonl; REF=/tmp/wanray_parallel_compiled_ref.pt
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
read -r ULYSSES CFG <<< "${LAYOUT:-2 2}"
[ "${KEEP_ROWS:-0}" = 1 ] || rm -f "$ROWS" "$REF"
variants=("$@"); [ $# -gt 0 ] || variants=(eager compile-fp8)
for variant in "${variants[@]}"; do
  case $variant in
    eager) flags="--vae" ;;
    compile) flags="--compile" ;;
    compile-fp8) flags="--compile --fp8" ;;
    compile-fp8-all) flags="--compile --fp8 --attention cudnn-fp8" ;;
    *) echo "unknown variant $variant (eager | compile | compile-fp8 | compile-fp8-all)"; exit 2 ;;
  esac
  torchrun --nproc-per-node $((ULYSSES * CFG)) bench/gpu_parallel.py --ulysses "$ULYSSES" --cfg "$CFG" \
    --rows "$ROWS" --reference "$REF" --repeats 2 $flags
done
python3 bench/gpu_parallel.py --report "$ROWS" --name gpu_parallel_compiled
