#!/usr/bin/env bash
# Train the embedded model (wanray/embedded_model/): render the synthetic set, train the VAE, then the DiT + VACE
# with the Ray Train loop from a latent cache and, beside it on the same device, fine-tune the VAE's decoder on long
# clips (its encoder, hence the DiT's latents, untouched; both stages are launch-bound, so they share a GPU well).
# The same command runs on a CPU (slowly) or a GPU host; each stage is time-boxed.
#   scripts/train-embedded.sh cuda outputs/embedded                  # GPU host, ~30 min (see training/README.md)
#   scripts/train-embedded.sh cpu outputs/embedded 7200 14400 7200   # CPU: seconds for the vae, dit, decoder stages
#   STAGES=dit BASE=wanray/embedded_model scripts/train-embedded.sh cuda OUT 0 900   # more DiT training of a model
# Then: wanray generate --model outputs/embedded/model ...; copy outputs/embedded/model/* to ship it.
# Rerunning with the same OUT resumes each stage from its checkpoint.
# Settings (environment): N entries (800); STAGES, some of "vae dit vae-decoder" (all); VAE_DIM, the new VAE's
# base width (default: the bundled model's); VAE_FROM, a model directory whose VAE the vae stage continues instead of
# a new one; VAE_BATCH clips per VAE step (64); VAE_LR (3e-4); VAE_STEPS and DECODER_STEPS, the vae and decoder
# stages' step counts (100000: the time budgets end them); VAE_COSINE=1 decays both stages' learning rates to 0 over
# those steps (set them to the steps that fit the budgets); BASE, a model directory
# whose VAE and DiT the DiT stage continues from when the vae stage is not run; DIT_BATCH samples per DiT step
# (32); DIT_LR (3e-4); DIT_STEPS (100000); DIT_SET, more space-separated KEY=VALUE settings of the DiT run
# (e.g. "optim.schedule=cosine strategy.gradient_checkpointing=false": cosine decays to 0 at DIT_STEPS).
set -euo pipefail
DEVICE=${1:?usage: $0 cpu|cuda OUT [VAE_SECONDS DIT_SECONDS DECODER_SECONDS]}; OUT=${2:?usage: $0 cpu|cuda OUT}
VAE_SECONDS=${3:-480}; DIT_SECONDS=${4:-750}; DECODER_SECONDS=${5:-300}; N=${N:-800}; PY=${PYTHON:-python3}
STAGES=${STAGES:-vae dit vae-decoder}; VAE_BATCH=${VAE_BATCH:-64}; VAE_LR=${VAE_LR:-3e-4}; DIT_BATCH=${DIT_BATCH:-32}; DIT_LR=${DIT_LR:-3e-4}
DIT_STEPS=${DIT_STEPS:-100000}; DIT_SETTINGS=(); for kv in ${DIT_SET:-}; do DIT_SETTINGS+=(--set "$kv"); done
VAE_STEPS=${VAE_STEPS:-100000}; DECODER_STEPS=${DECODER_STEPS:-100000}; COSINE=${VAE_COSINE:+--cosine}
DATA=$OUT/synth
runs() { [[ " $STAGES " == *" $1 "* ]]; }
[[ -f $DATA/metadata.csv ]] || $PY -m wanray.datasets.synth --n "$N" --out "$DATA" --height 128 --width 128 --frames 77
if runs vae; then
  $PY -m wanray.training.embedded --stage vae --data "$DATA" --out "$OUT" --device "$DEVICE" --steps "$VAE_STEPS" \
      --batch "$VAE_BATCH" --lr "$VAE_LR" --crop 64 --clip-frames 13 --max-seconds "$VAE_SECONDS" --save-every 1000 \
      ${VAE_DIM:+--vae-dim "$VAE_DIM"} ${VAE_FROM:+--vae-from "$VAE_FROM"} $COSINE
elif [[ -n ${BASE:-} && ! -f $OUT/model_vae/wanray_spec.json ]]; then
  mkdir -p "$OUT/model_vae" && cp -r "$BASE"/. "$OUT/model_vae/"   # the DiT stage learns in BASE's latents
fi
decoder() {  # the decoder stage; with --checkpoint-only it writes no model folder
  $PY -m wanray.training.embedded --stage vae-decoder --data "$DATA" --out "$OUT" --device "$DEVICE" \
      --steps "$DECODER_STEPS" --batch 16 --crop 64 --clip-frames 77 --save-every 200 $COSINE "$@"
}
beside=""
if runs dit && runs vae-decoder; then  # the decoder trains beside the DiT; the model folders change only after both
  decoder --max-seconds "$DECODER_SECONDS" --checkpoint-only & beside=$!
fi
if runs dit; then
  $PY -m wanray.training.embedded --stage dit --data "$DATA" --out "$OUT" --device "$DEVICE" --steps "$DIT_STEPS" \
      --frames 77 --batch "$DIT_BATCH" --lr "$DIT_LR" --max-seconds "$DIT_SECONDS" --save-every 500 \
      ${DIT_SETTINGS[@]+"${DIT_SETTINGS[@]}"}
fi
if [[ -n $beside ]]; then
  wait "$beside"
  decoder --max-seconds 0   # resumes from its checkpoint and writes the VAE into model/ and model_vae/
elif runs vae-decoder; then
  decoder --max-seconds "$DECODER_SECONDS"
fi
echo "train-embedded: done, $OUT/model"
