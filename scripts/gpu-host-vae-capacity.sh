#!/usr/bin/env bash
# What caps the embedded VAE: its size or its training? One device call overfits the shipped VAE on 8 clips at two
# learning rates and measures the round trip of those clips and of 8 unseen ones before and after
# (bench/embedded_vae_capacity.py). It can share the call with a run of gpu-host-train-embedded.sh started just
# before it (`call ... wait`): it then waits for that run's install, and takes the shipped VAE's weights from that
# run's step-0 checkpoint in .ckpt (a VAE stage's holds the whole VAE) rather than carry them twice.
#
#   bash scripts/gpu-host-vae-capacity.sh stage      # here: .ckpt-vae, the shipped VAE as a step-0 checkpoint
#                                                    # (after the training run's own stage step, if any)
#   bash scripts/gpu-host-vae-capacity.sh call SECONDS OUT [wait]   # device call (carry .ckpt-vae, .bundle; .ckpt):
#                                                    # OUT/capacity.log and OUT/capacity.json; without .ckpt-vae
#                                                    # (the model's own files travel instead) it stages there
#
# Settings (environment): LRS ("2e-4 6e-4"), STEPS (600: the cosine's length; the time limit usually stops first).
set -euo pipefail
cd "$(dirname "$0")/.."
LRS=${LRS:-"2e-4 6e-4"}; STEPS=${STEPS:-600}; CLIPS=8; SEED=11; MODEL=$PWD/wanray/embedded_model
overfit() {  # the whole VAE on CLIPS whole clips of SEED, 13-frame windows; not from the checkout, whose wanray/
  cd /tmp    # would shadow the installed package on python -m's path
  "${PY:-python3}" -m wanray.training.embedded --stage vae --entries $CLIPS --data-seed $SEED --vae-from "$MODEL" \
    --batch 8 --crop 0 --clip-frames 13 --cosine --warmup 20 --steps "$STEPS" --save-every 100000 \
    --checkpoint-only --checkpoint-precision portable "$@"
}
step0() {  # .ckpt-vae: the shipped VAE as a step-0 checkpoint of the overfit run (~20 s on a CPU)
  rm -rf .ckpt-vae /tmp/wanray-capacity0
  (overfit --device cpu --lr 1e-4 --out /tmp/wanray-capacity0 --max-seconds 0)
  mv /tmp/wanray-capacity0/vae_stage/checkpoint .ckpt-vae && rm -rf /tmp/wanray-capacity0
}
case ${1:?usage: $0 stage|call SECONDS OUT [wait]} in
  stage)
    missing=$(git ls-files --deleted -- "$MODEL")  # left out by the training run's stage step: back for this step
    [[ -z $missing ]] || git checkout -- $missing
    PY=${PY:-$PWD/.venv/bin/python} step0
    [[ -z $missing ]] || rm -f $missing
    if [[ -f .ckpt/trainable.safetensors ]] && cmp -s .ckpt/trainable.safetensors .ckpt-vae/trainable.safetensors; then
      rm .ckpt-vae/trainable.safetensors && echo "stage: .ckpt-vae takes its weights from .ckpt's step-0 checkpoint"
    fi
    echo "stage: .ckpt-vae ($(du -sh .ckpt-vae | cut -f1))" ;;
  call)
    budget=${2:?seconds}; out=${3:?OUT}; other=${4:-}; started=$SECONDS; mkdir -p "$out"
    exec > >(tee "$out/capacity.log") 2>&1
    export PYTHONPATH=/tmp/wanray-site:${SITE:-/tmp/site} PYTHONUNBUFFERED=1
    if [[ $other == wait ]]; then  # the training call beside this one installs: wait for it (at most 3 minutes)
      until (cd /tmp && python3 -c "import diffsynth, wanray.training.embedded") 2>/dev/null; do
        (( SECONDS - started < 180 )) || { echo "capacity: no install after 180 s" >&2; exit 1; }; sleep 2
      done
    else
      source scripts/gpu-host-install.sh && install_on_gpu_host python3 "${SITE:-/tmp/site}"
    fi
    echo "capacity: installed at $((SECONDS - started)) s on $(nvidia-smi --query-gpu=name --format=csv,noheader)"
    if [[ ! -d .ckpt-vae ]]; then PY=python3 step0  # the model's files came instead (the tree's 64 MiB hold either)
    elif [[ ! -f .ckpt-vae/trainable.safetensors ]]; then cp .ckpt/trainable.safetensors .ckpt-vae/; fi
    bench() { python3 bench/embedded_vae_capacity.py --model "$MODEL" --checkpoint "$1" --json "$2"; }
    [[ ${BEFORE:-1} == 0 ]] || bench .ckpt-vae /tmp/cap-before.json  # BEFORE=0: known already (the CPU's)
    left=$((budget - (SECONDS - started) - ${RESERVE:-90}))   # RESERVE: the benches after and the merge
    runs=()
    for lr in $LRS; do
      mkdir -p "/tmp/ovf$lr/vae_stage" && rm -rf "/tmp/ovf$lr/vae_stage/checkpoint"
      cp -r .ckpt-vae "/tmp/ovf$lr/vae_stage/checkpoint"
      (overfit --device cuda --lr "$lr" --out "/tmp/ovf$lr" --max-seconds "$left") > "/tmp/ovf$lr.log" 2>&1 &
      runs+=($!)
    done
    wait "${runs[@]}"  # these only: a bare `wait` also waits for the log's tee, which never ends (two calls hung)
    for lr in $LRS; do
      grep "step" "/tmp/ovf$lr.log" | awk 'NR % 5 == 0' | sed "s/^/lr $lr: /"; tail -1 "/tmp/ovf$lr.log"
      bench "/tmp/ovf$lr/vae_stage/checkpoint" "/tmp/cap-ovf$lr.json"
    done
    python3 - "$out/capacity.json" /tmp/cap-*.json <<'EOF'
import json, sys
from pathlib import Path
json.dump({Path(f).stem: json.loads(Path(f).read_text()) for f in sys.argv[2:]}, open(sys.argv[1], "w"), indent=1)
EOF
    echo "capacity: done in $((SECONDS - started)) s" ;;
  *) echo "unknown step $1" >&2; exit 2 ;;
esac
