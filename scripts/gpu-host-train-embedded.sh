#!/usr/bin/env bash
# Train the embedded model on an offline GPU host (torch, no package index, reached through calls of <= 10 minutes
# that carry <= 64 MiB each way) as a sequence of INDEPENDENT calls. Each call installs what it needs if the machine
# is bare, renders its training set in memory from a seed, resumes from the checkpoint it carries, trains until its
# time is nearly up, and writes the new checkpoint (bf16 weights, float8 Adam moments: `--checkpoint-precision
# portable`) and its log under OUT. A machine given back between calls costs at most that call, never the run.
#
#   # here, once: the lean bundle (diffsynth and what the host lacks; imageio-ffmpeg's part is not needed)
#   PYTHON=.venv/bin/python shared/gpu/offline-bundle.sh /tmp/bundle_ds --max-mb 15 diffsynth==2.1.12
#   bash scripts/gpu-host-train-embedded.sh stage /tmp/bundle_ds part-02   # here: .ckpt + .bundle, before each call
#   bash scripts/gpu-host-train-embedded.sh call 530 "$OUT"                 # device call (carry .ckpt, .bundle, .frozen)
#   bash scripts/gpu-host-train-embedded.sh collect [DIR] LABEL             # here: the call's files -> .ckpt, log -> bench
#   ... stage / call / collect again, as one batch of tool calls ...
#   bash scripts/gpu-host-train-embedded.sh ship                            # here: the checkpoint's DiT or VAE -> the package
#   bash scripts/gpu-host-train-embedded.sh stage none                      # here: restore the checkout
#
# What trains: STAGE
# - vae: the whole VAE (encoder too) on 77-frame clips, continuing the shipped one (VAE_DIM: widened first). The
#   latents change, so the DiT must then train on them (STAGE=dit after shipping the VAE). The checkpoint holds the
#   whole VAE; with its moments it is too large to carry back in, so each call (ONE_CALL=1) returns it without them
#   (a dim-40 VAE's would take the files back past 64 MiB), and the run's next call resumes it with fresh moments.
# - vae-decoder: the VAE's decoder on 77-frame clips; the encoder, hence the shipped DiT's latents, stays as it is, so
#   the result ships without retraining the DiT. The checkpoint holds the whole VAE.
# - dit: the DiT and its VACE branch on rendered entries encoded by the shipped encoders, in one process (no Ray:
#   wanray.training.embedded_dit). The call also carries the VAE's encoder half (.frozen/, 12 MB), from which the host
#   rebuilds a model folder (python -m wanray.training.gpu_host assemble).
# The first stage step makes a step-0 checkpoint of the shipped model and names the run (.ckpt/run_id): a warm
# machine's kept checkpoint is resumed only by the same run's calls. The stage step leaves the model's two large
# files out of the checkout, so checkout + bundle part + checkpoint fit one call; it refuses what does not. A
# one-call whole-VAE run carries no checkpoint: it keeps the VAE file, which the call widens (VAE_DIM) and trains.
# Settings (environment; keep them the same for every call of a run): STAGE (vae-decoder), STEPS (the cosine's
# length: 3000 for the VAE's decoder, 2000 for the whole VAE, 6000 for the DiT), ENTRIES (600; DiT 1000 rendered
# entries), DATA_SEED (19: the shipped runs trained on seeds 0 and 11-18, the evaluations use 7 and 1234), BATCH (16
# clips; DiT 32 samples), CROP (64), CLIP_FRAMES (77), LR (1e-4; whole VAE and DiT 2e-4), SAVE_EVERY (100 steps; DiT
# 500), WARMUP (VAE stages: linear warm-up steps, STEPS/20 up to 100; the DiT stage sets its own), RESERVE (45 s kept
# for the last save and the pack), LOSS (VAE stages: l1, or mse, what PSNR measures), DECODER_MULT (vae-decoder:
# widen the shipped (2,2,4,4) decoder first, e.g. 2,3,4,4; the stage step refuses a run whose later calls, Adam's
# moments included, would not fit the carry: 2,2,5,5 does not), VAE_DIM (vae: widen the whole shipped VAE, encoder
# too, to this base width first, starting from its function, e.g. 40; the DiT then fine-tunes on its latents), ONE_CALL
# (1: run it anyway: each call returns its checkpoint without Adam's moments, and the next call of the run resumes
# it with fresh ones; the whole VAE, 14 M parameters, needs it: its moments take the carry past 64 MiB).
# The same training runs on a CPU with the same seed and step count (exact precision resumes bit for bit):
#   python -m wanray.training.embedded --stage vae-decoder --entries 600 --data-seed 19 --out OUT --device cpu ...
#   python -m wanray.training.embedded --stage dit --entries 1000 --data-seed 19 --frames 77 --out OUT --device cpu ...
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${STAGE:-vae-decoder}
[[ $STAGE =~ ^(dit|vae|vae-decoder)$ ]] || { echo "STAGE: dit, vae or vae-decoder" >&2; exit 2; }
case $STAGE in dit) d=(6000 1000 32 2e-4 500) ;; vae) d=(2000 600 16 2e-4 100) ;; *) d=(3000 600 16 1e-4 100) ;; esac
STEPS=${STEPS:-${d[0]}}; ENTRIES=${ENTRIES:-${d[1]}}; BATCH=${BATCH:-${d[2]}}; LR=${LR:-${d[3]}}
SAVE_EVERY=${SAVE_EVERY:-${d[4]}}; DATA_SEED=${DATA_SEED:-19}; CROP=${CROP:-64}; CLIP_FRAMES=${CLIP_FRAMES:-77}
RESERVE=${RESERVE:-45}; LOSS=${LOSS:-l1}; WARMUP=${WARMUP:-$(( STEPS / 20 < 100 ? STEPS / 20 : 100 ))}
MODEL=wanray/embedded_model; LARGE=("$MODEL/Wan2.1_VAE.pth" "$MODEL/diffusion_pytorch_model-00001-of-00001.safetensors")
CKPT_NAME=${STAGE//-/_}_stage/checkpoint; ENCODER=.frozen/vae_encoder.safetensors
export STAGE STEPS ENTRIES DATA_SEED BATCH CROP CLIP_FRAMES LR SAVE_EVERY WARMUP LOSS DECODER_MULT VAE_DIM ONE_CALL
train() {  # python -m wanray.training.embedded with this run's settings; MODEL: the model folder it starts from
  local run=(--stage "$STAGE" --entries "$ENTRIES" --data-seed "$DATA_SEED" --batch "$BATCH" --lr "$LR"
             --steps "$STEPS" --save-every "$SAVE_EVERY" --checkpoint-only --checkpoint-precision portable)
  if [[ $STAGE == dit ]]; then run+=(--frames "$CLIP_FRAMES" --model "$MODEL")
  else run+=(--crop "$CROP" --clip-frames "$CLIP_FRAMES" --cosine --warmup "$WARMUP" --loss "$LOSS"
             --vae-from "$MODEL" ${DECODER_MULT:+--decoder-dim-mult "$DECODER_MULT"} ${VAE_DIM:+--vae-dim "$VAE_DIM"}
             ${ONE_CALL:+--fresh-moments}); fi
  "${PY:-python3}" -m wanray.training.embedded "${run[@]}" "$@"
}
step_of() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$1/trainer_state.json"; }
holds_ckpt() { [[ -f $1/trainer_state.json ]]; }  # else a one-call VAE run's .ckpt: its run_id alone
moments_bytes() {  # Adam's float8 moments, 2 bytes per trained value, which a step-0 checkpoint does not hold yet
  python3 - "$1/trainable.safetensors" "$([[ $STAGE == vae-decoder ]] && echo decoder.)" <<'EOF'
import json, math, struct, sys
with open(sys.argv[1], "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
print(sum(2 * math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__" and k.startswith(sys.argv[2])))
EOF
}
starts_at() {  # what a call starts from: a carried checkpoint, or (none carried) the shipped VAE
  if holds_ckpt "$1"; then echo "checkpoint at step $(step_of "$1")"
  else echo "the shipped VAE${VAE_DIM:+, widened to $VAE_DIM on the host}, no checkpoint"; fi
}
holds_dit() { grep -q '"dit\.' < <(head -c 1000000 "$1/trainable.safetensors"); }  # the safetensors header names it

case ${1:?usage: $0 stage BUNDLE PART...|stage none|call SECONDS OUT|collect [DIR] LABEL|ship} in
  stage)  # here: what the next call carries
    changed=$(git diff --name-only --diff-filter=MT -- "$MODEL")   # a new model copied in: never overwrite it
    [[ -z $changed ]] || { echo "stage: commit or move your changes first: $changed" >&2; exit 1; }
    if [[ ${2:-} == none ]]; then git checkout -- "$MODEL"; rm -rf .bundle .frozen; echo "checkout restored"; exit 0; fi
    [[ -d ${2:-} && $(cd "$2" && pwd) != "$PWD/.bundle" ]] ||
      { echo "stage: give the bundle's folder (not .bundle, which this step empties) and the parts to carry" >&2; exit 2; }
    git checkout -- "$MODEL"
    if holds_ckpt .ckpt && [[ $(holds_dit .ckpt && echo dit) != $([[ $STAGE == dit ]] && echo dit) ]]; then
      echo "stage: .ckpt is another stage's checkpoint (STAGE=$STAGE): ship or move it first" >&2; exit 1
    fi
    if ! holds_ckpt .ckpt; then  # step 0: the shipped model, no optimizer state yet
      rm -rf .ckpt /tmp/wanray-step0
      if [[ $STAGE == vae && ${ONE_CALL:-} == 1 ]]; then  # the call widens the shipped VAE itself: its file (29 MB)
        mkdir .ckpt                                        # carries lighter than a dim-40 step-0 checkpoint (44 MB)
      else
        PY=${PY:-.venv/bin/python} MODEL=$MODEL train --device cpu --out /tmp/wanray-step0 --max-seconds 0
        mv "/tmp/wanray-step0/$CKPT_NAME" .ckpt && rm -rf /tmp/wanray-step0
      fi
      python3 -c 'import uuid; print(uuid.uuid4())' > .ckpt/run_id  # which run a warm machine's checkpoint belongs to
    fi
    rm -rf .frozen
    if [[ $STAGE == dit ]]; then "${PY:-.venv/bin/python}" -m wanray.training.gpu_host carry-encoder "$MODEL" "$ENCODER"; fi
    large=("${LARGE[@]}"); holds_ckpt .ckpt || large=("${LARGE[1]}")  # keep the VAE it starts from
    rm -f "${large[@]}"; rm -rf .bundle; mkdir .bundle
    cp "$2"/{MANIFEST.txt,SHA256SUMS,offline-install.sh} .bundle/
    for part in "${@:3}"; do cp "$2/${part%.tar.xz}.tar.xz" .bundle/; done
    carried=(.bundle/* .ckpt/*); [[ -d .frozen ]] && carried+=(.frozen/*)
    size=$(( $(git ls-files -z | xargs -0 cat 2>/dev/null | wc -c) + $(cat "${carried[@]}" | wc -c) ))
    echo "this call carries $((size / 1048576)) MiB (64 at most): $(starts_at .ckpt), $(ls .bundle | tr '\n' ' ')"
    (( size <= 64 * 1048576 )) || { echo "too large: carry fewer parts in this call" >&2; exit 1; }
    # the calls after a step-0 one carry the moments too: refuse a run they cannot
    if holds_ckpt .ckpt && (( $(step_of .ckpt) == 0 )); then
      size=$(( size + $(moments_bytes .ckpt) ))
      echo "the calls after it carry $((size / 1048576)) MiB with Adam's moments"
      if (( size > 64 * 1048576 )) && [[ ${ONE_CALL:-} != 1 ]]; then
        echo "too large to resume: a run this size cannot go past one call (ONE_CALL=1 runs it in one call)" >&2; exit 1
      fi
    fi ;;
  call)  # on the GPU host: everything this call needs, then OUT/checkpoint.tar.part-* and OUT/call.log
    budget=${2:?seconds this call may take}; out=${3:?OUT}; mkdir -p "$out"; started=$SECONDS
    exec > >(tee "$out/call.log") 2>&1
    echo "call: $(date -u +%FT%TZ) on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo cpu)," \
         "budget ${budget} s, carried: $(starts_at .ckpt)"
    site=${SITE:-/tmp/site}; work=${WORK:-/tmp/emb}; py=${PY:-python3}
    export PYTHONUNBUFFERED=1
    source scripts/gpu-host-install.sh && install_on_gpu_host "$py" "$site"
    echo "install: $((SECONDS - started)) s"
    # a warm machine keeps the last call's checkpoint: take it when it is this run's (the stage step's run_id) and
    # newer than the carried one (that call's files were lost), else the carried one (another run's, or older)
    run_id=$(cat .ckpt/run_id 2>/dev/null || echo none); kept=$work/$CKPT_NAME
    if [[ $run_id != none && $(cat "$kept.run_id" 2>/dev/null) == "$run_id" ]] && holds_ckpt "$kept" &&
       (( $(step_of "$kept") > $(holds_ckpt .ckpt && step_of .ckpt || echo -1) )); then
      echo "call: this machine kept step $(step_of "$kept") of this run: resuming from it"
    else
      rm -rf "$kept" && mkdir -p "$(dirname "$kept")" && echo "$run_id" > "$kept.run_id"
      if holds_ckpt .ckpt; then cp -r .ckpt "$kept"; fi  # else training starts from the model
    fi
    cd "$work"  # python -m puts the working directory first on sys.path: not the checkout's wanray/
    start_from=$OLDPWD/$MODEL
    if [[ $STAGE == dit ]]; then  # the model folder the DiT stage loads: small files + carried encoder + checkpoint
      start_from=$work/model_in
      "$py" -m wanray.training.gpu_host assemble "$OLDPWD/$MODEL" "$OLDPWD/$ENCODER" "$work/$CKPT_NAME" "$start_from"
    fi
    left=$((budget - (SECONDS - started)))   # the loop stops itself RESERVE s early; timeout is the backstop
    MODEL=$start_from timeout $((left - 15)) bash -c "$(declare -f train); train \"\$@\"" train \
      --device "${DEVICE:-cuda}" --out "$work" --max-seconds $((left - RESERVE)) || echo "call: training ended with $?"
    keep=(.); [[ ${ONE_CALL:-} == 1 ]] && keep=(--exclude=./optimizer.pt .)  # it ships from here: Adam's moments
    tar -C "$work/$CKPT_NAME" -cf - "${keep[@]}" | split -b 15000000 - "$out/checkpoint.tar.part-"  # would pass 64 MiB
    echo "call: done in $((SECONDS - started)) s, checkpoint at step $(step_of "$work/$CKPT_NAME")"; ls -la "$out" ;;
  collect)  # here: DIR (default: the newest call's files under /work/.device) -> .ckpt; its log -> bench/results/
    [[ $# -ge 3 ]] && { dir=$2; label=$3; } || { label=${2:?label}
      dir=$(find /work/.device -name checkpoint.tar.part-aa -printf '%T@ %h\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-); }
    [[ -f $dir/checkpoint.tar.part-aa ]] || { echo "collect: no checkpoint.tar.part-* in ${dir:-/work/.device}" >&2; exit 1; }
    rm -rf .ckpt.new && mkdir .ckpt.new && cat "$dir"/checkpoint.tar.part-* | tar -C .ckpt.new -xf -
    step_of .ckpt.new > /dev/null   # a whole checkpoint, else stop here and keep .ckpt
    if [[ -f .ckpt/run_id ]]; then cp .ckpt/run_id .ckpt.new/; fi   # the same run's next call
    rm -rf .ckpt && mv .ckpt.new .ckpt
    mkdir -p bench/results/embedded_calls && log=bench/results/embedded_calls/$label.log
    cp "$dir/call.log" "$log" && echo "collect: checkpoint at step $(step_of .ckpt); log in $log" ;;
  ship)  # here: the checkpoint's DiT or VAE into the package (bf16, as shipped)
    git checkout -- "$MODEL"
    "${PY:-.venv/bin/python}" -m wanray.training.gpu_host ship "$STAGE" .ckpt "$MODEL" ;;
  *) echo "unknown step $1" >&2; exit 2 ;;
esac
