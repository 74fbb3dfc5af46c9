#!/usr/bin/env bash
# Reproduce the shipped embedded model (wanray/embedded_model/): render the synthetic set, train the VAE, then
# the DiT + VACE with the Ray Train loop. The same command runs on a CPU (slowly) or a GPU host.
#   scripts/train-embedded.sh cuda outputs/embedded            # GPU host, ~7 min (see training/README.md)
#   scripts/train-embedded.sh cpu outputs/embedded 7200 14400  # CPU: time-box each stage (seconds)
# Then: wanray generate --model outputs/embedded/model ...; copy outputs/embedded/model/* to ship it.
set -euo pipefail
DEVICE=${1:?usage: $0 cpu|cuda OUT [VAE_SECONDS DIT_SECONDS]}; OUT=${2:?usage: $0 cpu|cuda OUT}
VAE_SECONDS=${3:-150}; DIT_SECONDS=${4:-270}; N=${N:-800}; PY=${PYTHON:-python3}
DATA=$OUT/synth
[[ -f $DATA/metadata.csv ]] || $PY -m wanray.datasets.synth --n "$N" --out "$DATA" --height 128 --width 128 --frames 33
$PY -m wanray.training.embedded --stage vae --data "$DATA" --out "$OUT" --device "$DEVICE" --steps 100000 \
    --batch 32 --crop 64 --max-seconds "$VAE_SECONDS" --save-every 1000
$PY -m wanray.training.embedded --stage dit --data "$DATA" --out "$OUT" --device "$DEVICE" --steps 100000 \
    --frames 17 --max-seconds "$DIT_SECONDS" --save-every 200
