#!/usr/bin/env bash
# Continue training the shipped embedded model on an offline GPU host (one that has torch but no package index),
# in steps that each fit one remote command. Carry an offline bundle made here with
#   PYTHON=.venv/bin/python HOST_LIST=<host-installed.txt + imageio-ffmpeg> shared/gpu/offline-bundle.sh /tmp/bundle \
#       --max-mb 31 'ray[default,data,train]==2.60.0' diffsynth==2.1.12 av tensorboardX
# (PyAV replaces imageio-ffmpeg's 45 MB ffmpeg for video I/O; a pip older than the venv's refuses the dry run),
# part by part in .bundle (the stage step below puts them there), then on the host:
#   bash scripts/gpu-host-train-embedded.sh install           # after each transfer: unpack parts, install this checkout
#   N=1200 bash scripts/gpu-host-train-embedded.sh prepare    # render the set while timing the DiT step per batch size
#   VAE_DIM=32 bash scripts/gpu-host-train-embedded.sh start 360 600 540   # background: scripts/train-embedded.sh
#   bash scripts/gpu-host-train-embedded.sh wait 540          # follow the run's log for up to 540 s; 0 once it is done
#   bash scripts/gpu-host-train-embedded.sh pack "$OUT"       # the model (DiT, VAE in bf16) as <= 15 MB pieces in OUT
# The checkout (the 46 MB model in it) and the bundle do not fit one call (64 MiB): the stage step (run here, before
# each call) leaves the VAE out of the checkout for one install call and the DiT for the other, with the parts each
# carries in .bundle; install gathers the model's files in /tmp/emb/base.
#   bash scripts/gpu-host-train-embedded.sh stage vae /tmp/bundle part-01 part-03   # here; then call 1: install
#   bash scripts/gpu-host-train-embedded.sh stage dit /tmp/bundle part-02           # here; then call 2: install, start
#   bash scripts/gpu-host-train-embedded.sh stage none                              # here, after the last call
# Send the whole sequence (stage, install, stage, install + start + wait, wait, wait + pack) as one batch of tool calls:
# they run one after another, so no reply has to be read within the warm window (bench/results/embedded_runs_lost_h200.md).
# Everything runs in /tmp/emb (WORK) from /tmp/site, so new copies of the checkout do not disturb it;
# the trained model is /tmp/emb/model. The start step takes scripts/train-embedded.sh's settings (N, STAGES,
# VAE_*, DIT_*) and its three stage budgets in seconds; with STAGES=dit the DiT continues the shipped model.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=/tmp/site; WORK=${WORK:-/tmp/emb}; LOG=$WORK/log
export PYTHONPATH=$SITE RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
case ${1:?usage: $0 stage vae|dit|none [BUNDLE PART...]|install|prepare|start VAE_S DIT_S DECODER_S|wait SECONDS|pack OUT} in
  stage)  # here, not on the host: what the next call's checkout carries
    [[ ${2:-} =~ ^(vae|dit|none)$ ]] ||
      { echo "stage: leave out 'vae' or 'dit' of the checkout, or 'none' to restore it" >&2; exit 2; }
    [[ $2 == none || ( -d ${3:-} && $(cd "$3" && pwd) != "$PWD/.bundle" ) ]] ||
      { echo "stage $2: give the bundle's folder (not .bundle, which this step empties) and the parts to carry" >&2; exit 2; }
    model=wanray/embedded_model
    changed=$(git diff --name-only --diff-filter=MT -- "$model")   # a new model copied in: never overwrite it
    [[ -z $changed ]] || { echo "stage: commit or move your changes first: $changed" >&2; exit 1; }
    git checkout -- "$model"; rm -rf .bundle
    case $2 in
      vae) rm "$model/Wan2.1_VAE.pth" ;;
      dit) rm "$model"/diffusion_pytorch_model-0*.safetensors ;;
      none) echo "checkout restored"; exit 0 ;;
    esac
    bundle=$3; mkdir .bundle
    cp "$bundle"/{MANIFEST.txt,SHA256SUMS,offline-install.sh} .bundle/
    for part in "${@:4}"; do cp "$bundle/${part%.tar.xz}.tar.xz" .bundle/; done
    size=$(( $(git ls-files -z | xargs -0 cat 2>/dev/null | wc -c) + $(cat .bundle/* | wc -c) ))
    echo "this call carries $((size / 1048576)) MiB (64 at most): $(ls .bundle | tr '\n' ' ')"
    (( size <= 64 * 1048576 )) || { echo "too large: carry fewer parts in this call" >&2; exit 1; } ;;
  install)
    # the shipped model's files as far as this call's checkout has them: the large ones may come in different calls
    mkdir -p "$WORK/base" && cp -rn wanray/embedded_model/. "$WORK/base/"
    eval "$(bash .bundle/offline-install.sh .bundle "$SITE")"
    if [[ ! -f $SITE/.wanray-installed ]] && python3 -c "import ray, diffsynth, av" 2>/dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SITE" . 2>&1 |
        grep -v "^WARNING" || true
      cp -rn "$WORK/base/." "$SITE/wanray/embedded_model/"   # the files this checkout lacked
      mkdir -p "$WORK" && cp -r scripts "$WORK/" && touch "$SITE/.wanray-installed"
    fi
    python3 -c "import wanray, ray, diffsynth, torch; print('ready:', wanray.__file__, ray.__version__, torch.cuda.get_device_name())" ||
      echo "not ready yet: more parts to come" ;;
  prepare)  # the set renders on the CPUs while the benchmark uses the GPU
    mkdir -p "$WORK"
    (cd "$WORK" && python3 -m wanray.datasets.synth --n "${N:-800}" --out "$WORK/synth" --height 128 --width 128 \
      --frames 77 > "$WORK/synth.log" 2>&1) &
    python3 bench/train_step.py --embedded --device cuda --batches "${BATCHES:-1,16,32,64}" --steps 10 2>&1 |
      grep -E "^[|#]"
    wait $! && tail -1 "$WORK/synth.log" ;;
  start)
    mkdir -p "$WORK"
    # without the vae stage, the DiT stage continues from the shipped model (its VAE, hence its latents, and its DiT);
    # VAE_FROM=/tmp/emb/base continues the shipped VAE
    [[ -d $WORK/base ]] || cp -r wanray/embedded_model "$WORK/base"
    cd "$WORK"  # python -m puts the working directory first on sys.path: not the checkout's wanray/
    setsid nohup env BASE="$WORK/base" bash "$WORK/scripts/train-embedded.sh" cuda "$WORK" "${2:?vae seconds}" \
      "${3:?dit seconds}" "${4:?decoder seconds}" > "$LOG" 2>&1 < /dev/null &
    echo "started: log $LOG" ;;
  wait)
    # a machine left idle past its warm window (30 s on the device tool) comes back bare: say so at once
    [[ -f $LOG ]] || { echo "no run on this machine ($LOG is missing): it was given back; install and start again"; exit 3; }
    deadline=$((SECONDS + ${2:?seconds}))
    while (( SECONDS < deadline )) && ! grep -qE "train-embedded: done|Traceback" "$LOG"; do sleep 5; done
    grep -E "synth: wrote|new VAE|vae(_decoder)?: step [0-9]+0?0/|latent cache|cache: [0-9]+ entries|in_memory|step [0-9]+/|reached|wrote|done|Error|error" \
      "$LOG" | tail -40
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
    grep -q "train-embedded: done" "$LOG" ;;   # the exit status: done, or not (yet)
  pack)  # the trained model, in bf16 as shipped, in pieces small enough to send back (64 MiB at most)
    out=${2:?out dir}; mkdir -p "$out"
    python3 -c "
from pathlib import Path; from safetensors.torch import load_file; from wanray.model_writer import write_dit_shards
src = Path('$WORK/model'); files = sorted(src.glob('diffusion_pytorch_model-*.safetensors'))
state = {k: v for f in files for k, v in load_file(str(f)).items()}
[f.unlink() for f in files]; print(write_dit_shards(src, state))   # one bf16 file
import torch; vae = src / 'Wan2.1_VAE.pth'; w = torch.load(vae, map_location='cpu', weights_only=True)
torch.save({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in w.items()}, vae)"   # as shipped
    tar -C "$WORK" -cf - model | split -b 15000000 - "$out/model.tar.part-"
    grep -E "vae(_decoder)?: step|step [0-9]+/" "$LOG" | tail -400 > "$out/train.log" || true
    ls -la "$out" ;;
esac
