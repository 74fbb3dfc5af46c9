#!/usr/bin/env bash
# Base vs LoRA vs full fine-tune of the embedded model, as the evaluation report shows them: render a synthetic set
# the shipped model never saw (seed 7) of a dance it never saw (DANCE, default kick: wanray.datasets.pose's held-out
# dance), fine-tune a LoRA and the full DiT + VACE on its train split with the same budget, then rank the three on
# its test split with `wanray eval` (PSNR, SSIM, leaderboard, side-by-sides). MAX_STEPS also bounds each fine-tune
# by steps (the same work whatever else the box runs); DANCE=all renders the seven trained dances instead.
#   scripts/compare-embedded.sh cuda outputs/compare            # one GPU: ~10 min (bench/results/embedded_eval_h200.md)
#   scripts/compare-embedded.sh cpu outputs/compare 600 12      # CPU: seconds per fine-tune, test entries to rank;
#                                                                 # ~40 min on 2 cores (bench/results/embedded_eval_cpu.md)
set -euo pipefail
DEVICE=${1:?usage: $0 cpu|cuda OUT [SECONDS_PER_RUN MAX_ENTRIES]}; OUT=${2:?usage: $0 cpu|cuda OUT}
SECONDS_PER_RUN=${3:-150}; MAX_ENTRIES=${4:-12}; FRAMES=33; N=${N:-200}; PY=${PYTHON:-python3}
GPU=$([ "$DEVICE" = cuda ] && echo true || echo false)
DANCE=${DANCE:-kick}; DANCES=(); [[ $DANCE == all ]] || DANCES=(--dance "$DANCE")
[[ -f $OUT/synth/metadata.csv ]] || $PY -m wanray.datasets.synth --n "$N" --seed 7 --out "$OUT/synth" \
    --height 128 --width 128 --frames $FRAMES ${DANCES[@]+"${DANCES[@]}"}
for preset in embedded_lora embedded_full; do
  $PY -m wanray train run --preset $preset --set data.dataset="$OUT/synth" --set data.frames=$FRAMES \
      --set scaling.use_gpu=$GPU --set max_time_s="$SECONDS_PER_RUN" --set validation.every_steps=400 \
      --set output_dir="$OUT/train" ${MAX_STEPS:+--set max_steps="$MAX_STEPS"}
done
$PY -m wanray eval --dataset "$OUT/synth" --split test --out "$OUT/eval" --frames $FRAMES --device "$DEVICE" \
    --max-entries "$MAX_ENTRIES" \
    --models "base,lora=base+$OUT/train/embedded_lora/export/lora.safetensors,full=$OUT/train/embedded_full/export/model"
