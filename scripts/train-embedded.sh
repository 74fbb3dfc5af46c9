#!/usr/bin/env bash
# Train the embedded model (wanray/embedded_model/): render the synthetic set, train the VAE, then the DiT + VACE
# with the Ray Train loop from a latent cache, then fine-tune the VAE's decoder on long clips (its encoder, hence
# the DiT's latents, untouched). The same command runs on a CPU (slowly) or a GPU host; each stage is time-boxed.
#   scripts/train-embedded.sh cuda outputs/embedded                  # GPU host, ~30 min (see training/README.md)
#   scripts/train-embedded.sh cpu outputs/embedded 7200 14400 7200   # CPU: seconds for the vae, dit, decoder stages
# Then: wanray generate --model outputs/embedded/model ...; copy outputs/embedded/model/* to ship it.
# Rerunning with the same OUT resumes each stage from its checkpoint.
set -euo pipefail
DEVICE=${1:?usage: $0 cpu|cuda OUT [VAE_SECONDS DIT_SECONDS DECODER_SECONDS]}; OUT=${2:?usage: $0 cpu|cuda OUT}
VAE_SECONDS=${3:-480}; DIT_SECONDS=${4:-750}; DECODER_SECONDS=${5:-300}; N=${N:-800}; PY=${PYTHON:-python3}
DATA=$OUT/synth
[[ -f $DATA/metadata.csv ]] || $PY -m wanray.datasets.synth --n "$N" --out "$DATA" --height 128 --width 128 --frames 77
$PY -m wanray.training.embedded --stage vae --data "$DATA" --out "$OUT" --device "$DEVICE" --steps 100000 \
    --batch 64 --crop 64 --clip-frames 13 --max-seconds "$VAE_SECONDS" --save-every 1000
$PY -m wanray.training.embedded --stage dit --data "$DATA" --out "$OUT" --device "$DEVICE" --steps 100000 \
    --frames 77 --max-seconds "$DIT_SECONDS" --save-every 500
$PY -m wanray.training.embedded --stage vae-decoder --data "$DATA" --out "$OUT" --device "$DEVICE" --steps 100000 \
    --batch 16 --crop 64 --clip-frames 77 --max-seconds "$DECODER_SECONDS" --save-every 500
