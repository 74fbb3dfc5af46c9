"""``wanray generate`` and ``wanray demo``.

    wanray generate --image photo.jpg --prompt "the same person as an anime dancer" --out fairy.mp4 \\
        [--model embedded|wan2.1-i2v-14b-720p|wan2.2-i2v-a14b|DIR] [--lora my.safetensors:0.8] [--seed 7]
    wanray generate ... --model wan2.1-i2v-14b-720p --lora lightx2v_4step.safetensors --few-step
    wanray demo [--out outputs/demo.mp4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wanray.config import DEFAULT_FPS, DEFAULT_FRAMES, LoraRef
from wanray.sampling import SAMPLERS

ATTENTION_CHOICES = (
    "auto", "sdpa", "sdpa-math", "sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "sage", "flash2", "flash3", "xformers",
    "cudnn-fp8",
)
EXAMPLE_PHOTO = Path(__file__).parent / "assets" / "example_photo.png"
# The photo is rendered by wanray.datasets.example; this is its prompt (example_prompt()) and dance.
EXAMPLE_PROMPT = "an anime girl, long brown hair, red dress, light skin, dances the wave in the park"
EXAMPLE_DANCE = "wave"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="embedded",
                   help="spec name (embedded, wan2.1-i2v-14b-720p, wan2.2-i2v-a14b) or a model directory "
                        "in Wan-AI's published layout (default: embedded, the bundled miniature)")
    g.add_argument("--model-spec", default=None, help="spec of --model DIR when it cannot be recognised from its files")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    g.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="compute dtype (auto: bfloat16 on CUDA, float32 on CPU)")
    g.add_argument("--vae-dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="the VAE's dtype (auto: --dtype's, except bfloat16 on a CPU that runs it faster)")
    g.add_argument("--attention", default="auto", choices=ATTENTION_CHOICES,
                   help="attention backend; auto picks the fastest installed for the device, an explicit one "
                        "that is missing fails with how to install it")
    g.add_argument("--fp8-storage", action="store_true", help="keep DiT linear weights in FP8 (about half the memory)")
    g.add_argument("--fp8-compute", action="store_true",
                   help="FP8 matmuls for the DiT's linear layers (torchao float8): FP8 weights as --fp8-storage, and "
                        "faster; needs a GPU of compute capability >= 8.9 (Ada, Hopper) and pip install 'wanray[fp8]'")


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--negative-prompt", default=None, help="what to avoid (default: the Wan team's standard one)")
    g.add_argument("--seed", type=int, default=0, help="noise seed; the same seed gives the same video")
    g.add_argument("--height", type=int, default=None, help="output height, a multiple of 16 (default: the model's)")
    g.add_argument("--width", type=int, default=None, help="output width, a multiple of 16 (default: the model's)")
    g.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"number of frames, of the form 4n+1 (default {DEFAULT_FRAMES}: 5.1 s at 15 fps)")
    g.add_argument("--fps", type=int, default=DEFAULT_FPS, help=f"frames per second of the mp4 (default {DEFAULT_FPS})")
    g.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's; 50 for 14B)")
    g.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale; 1 turns it off")
    g.add_argument("--shift", type=float, default=None, help="sigma shift of the timesteps (default: the model's, 5)")
    g.add_argument("--sampler", default=None, choices=SAMPLERS,
                   help="euler (default): DiffSynth's flow-matching step; renoise: predict the clean latent and "
                        "noise it again, the step Wan2.1 4-step distillation LoRAs are trained for")
    g.add_argument("--few-step", action="store_true",
                   help="the settings of published 4-step distillation LoRAs (LightX2V): 4 steps, cfg 1, shift 5, "
                        "renoise on Wan2.1 and euler on Wan2.2; give the LoRA with --lora. --steps, --cfg, --shift "
                        "and --sampler still override them")
    g.add_argument("--lora", action="append", default=[], type=LoraRef.parse, metavar="PATH[:ALPHA][@EXPERT]",
                   help="apply a LoRA (safetensors) with strength ALPHA (default 1); repeat for several. "
                        "Wan2.2: @high_noise or @low_noise sends it to one expert, @all to both (default: the "
                        "expert a wanray export names in its metadata, else both)")
    g.add_argument("--tea-cache", type=float, default=None, metavar="THRESHOLD",
                   help="TeaCache step skipping with this relative-L1 threshold (e.g. 0.2); off by default")
    g.add_argument("--tiled-vae", action=argparse.BooleanOptionalAction, default=True,
                   help="encode/decode the VAE in tiles: one per GPU of the replica (the whole frame on one "
                        "GPU), DiffSynth's 30x52 / 15x26 latents where that would not fit in free GPU memory")
    g.add_argument("--dance", default=None, metavar="NAME",
                   help="drive the motion with this procedural dance's pose skeleton (as the VACE video): "
                        "wave, twist, robot, jump, sway, march, spin")
    g.add_argument("--end-image", default=None, help="optional last frame")
    g.add_argument("--vace-video", default=None, help="optional VACE conditioning video (e.g. a pose skeleton)")
    g.add_argument("--vace-mask", default=None, help="optional VACE mask video (white = generate)")
    g.add_argument("--vace-reference", default=None, help="optional VACE reference image")
    g.add_argument("--control-video", default=None, help="control video, for Fun-Control DiTs")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--info-json", default=None, help="also write what ran (backends, sizes, timings) to this JSON file")


def register(sub) -> None:
    p = sub.add_parser("generate", help="turn a photo into a video", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, help="the photo (first frame): jpg, png, webp or bmp")
    p.add_argument("--prompt", required=True, help="what the video shows")
    p.add_argument("--out", required=True, help="where to write the h264 mp4")
    _add_model_args(p)
    _add_generation_args(p)
    p.set_defaults(func=run_generate)

    d = sub.add_parser("demo", help="generate a video from the bundled example photo with the embedded model")
    d.add_argument("--out", default="outputs/demo.mp4", help="where to write the mp4 (default outputs/demo.mp4)")
    _add_model_args(d)
    _add_generation_args(d)
    d.set_defaults(func=run_demo)


def run_generate(args: argparse.Namespace) -> int:
    from wanray.config import GenerationConfig, ModelConfig
    from wanray.generation import FP8_STORAGE_NO_LORA, WanGenerator, resolve_model
    from wanray.inputs import InvalidInput, prepare
    from wanray.specs import DEFAULT_NEGATIVE_PROMPT

    vace_video = args.vace_video
    if args.dance is not None:
        if vace_video is not None:
            raise InvalidInput("--dance renders the VACE video itself; pass either --dance or --vace-video")
        vace_video = _pose_video(args)
    gen_config = GenerationConfig(
        image=args.image,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt if args.negative_prompt is not None else DEFAULT_NEGATIVE_PROMPT,
        end_image=args.end_image,
        control_video=args.control_video,
        vace_video=vace_video,
        vace_video_mask=args.vace_mask,
        vace_reference_image=args.vace_reference,
        seed=args.seed,
        height=args.height,
        width=args.width,
        frames=args.frames,
        fps=args.fps,
        steps=args.steps,
        cfg=args.cfg,
        sigma_shift=args.shift,
        sampler=args.sampler or "euler",
        tea_cache=args.tea_cache,
        tiled_vae=args.tiled_vae,
        loras=tuple(args.lora),
    )
    if args.few_step:
        gen_config = _few_step(gen_config, args)
    # The whole request is checked against the model's spec (its config files only) before minutes of loading.
    prepare(gen_config, resolve_model(args.model, args.model_spec)[1])
    for lora in gen_config.loras:
        if not Path(lora.path).is_file():
            raise InvalidInput(f"LoRA file {str(lora.path)!r} does not exist")
    if gen_config.loras and args.fp8_storage:
        raise InvalidInput(FP8_STORAGE_NO_LORA)
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise InvalidInput(f"--out must end in .mp4, got {out.name!r}")
    generator = WanGenerator.load(
        ModelConfig(model=args.model, model_spec=args.model_spec, device=args.device, dtype=args.dtype,
                    vae_dtype=args.vae_dtype, attention=args.attention, fp8_storage=args.fp8_storage,
                    fp8_compute=args.fp8_compute)
    )
    result = generator.generate(gen_config, show_progress=not args.no_progress)
    path = result.save(out)
    if args.info_json:
        Path(args.info_json).write_text(json.dumps(result.info, indent=2) + "\n")
    print(f"wrote {path.resolve()} ({len(result.frames)} frames, {result.frames[0].width}x{result.frames[0].height}, "
          f"{args.fps} fps, {result.seconds:.1f} s)")
    return 0


def _few_step(gen_config, args: argparse.Namespace):
    """--few-step's settings for the model, under the values given explicitly on the command line."""
    import dataclasses

    from wanray.generation import resolve_model
    from wanray.sampling import few_step

    _, spec = resolve_model(args.model, args.model_spec)
    tuned = few_step(gen_config, spec)
    given = {"steps": args.steps, "cfg": args.cfg, "sigma_shift": args.shift, "sampler": args.sampler}
    return dataclasses.replace(tuned, **{k: v for k, v in given.items() if v is not None})


def _pose_video(args: argparse.Namespace) -> list:
    """The named dance's OpenPose skeleton at the output size, frame count and fps."""
    from wanray.datasets.pose import DANCE_NAMES, render_pose_video
    from wanray.generation import resolve_model
    from wanray.inputs import InvalidInput, check_fps

    if args.dance not in DANCE_NAMES:
        raise InvalidInput(f"unknown dance {args.dance!r}; choose one of: {', '.join(DANCE_NAMES)}")
    check_fps(args.fps)
    _, spec = resolve_model(args.model, args.model_spec)
    height = args.height if args.height is not None else spec.default_height
    width = args.width if args.width is not None else spec.default_width
    return render_pose_video(args.dance, height, width, args.frames, args.fps)


def run_demo(args: argparse.Namespace) -> int:
    """The bundled photo, its prompt and the wave's pose skeleton, through the embedded model."""
    args.image = str(EXAMPLE_PHOTO)
    args.prompt = EXAMPLE_PROMPT
    if args.dance is None and args.vace_video is None:
        args.dance = EXAMPLE_DANCE
    return run_generate(args)
