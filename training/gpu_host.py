"""The Python steps of ``scripts/gpu-host-train-embedded.sh``: what a call carries, what the host rebuilds, what ships.

A call to the GPU host carries at most 64 MiB: the checkout (without the model's two large files), a bundle part and
the run's checkpoint. The DiT stage also needs the frozen encoders, so it carries the VAE's encoder half (12 MB in
bf16; the decoder is never run while training the DiT) and the host rebuilds a model folder from it:

    python -m wanray.training.gpu_host carry-encoder wanray/embedded_model .frozen/vae_encoder.safetensors
    python -m wanray.training.gpu_host assemble wanray/embedded_model .frozen/vae_encoder.safetensors CKPT OUT
    python -m wanray.training.gpu_host ship dit|vae|vae-decoder .ckpt wanray/embedded_model
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

ENCODER_PREFIXES = ("encoder.", "conv1.")  # the VAE's encoder and its latent projection: all that encoding runs


def carry_encoder(model_dir: Path, path: Path) -> Path:
    """The VAE's encoder half of ``model_dir`` as one bf16 safetensors file (the shipped VAE is bf16 already, so its
    latents stay exactly the model's)."""
    from safetensors.torch import save_file

    from wanray.loading import read_pth
    from wanray.model_writer import VAE_FILE

    state = read_pth(Path(model_dir) / VAE_FILE)
    half = {k: v.to(torch.bfloat16).contiguous() for k, v in state.items() if k.startswith(ENCODER_PREFIXES)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(half, str(path))
    return path


def assemble(model_dir: Path, encoder: Path, ckpt_dir: Path, out: Path) -> Path:
    """A model folder for the DiT stage: ``model_dir``'s small files (spec, umT5, CLIP, tokenizer), a VAE whose encoder
    is ``encoder``'s and whose decoder is zero (this folder encodes, it never decodes), and the checkpoint's DiT.
    Loading it checks every tensor's name and shape (``wanray.loading``)."""
    from safetensors.torch import load_file

    from wanray.components import build_vae
    from wanray.model_writer import VAE_FILE, write_dit_shards, write_vae
    from wanray.specs import spec_for_dir
    from wanray.training.checkpoint import load_checkpoint, replace_atomically
    from wanray.training.embedded_dit import dit_file_state

    spec = spec_for_dir(model_dir)
    vae = build_vae(spec.vae)
    state = {k: torch.zeros_like(v) for k, v in vae.model.state_dict().items()}
    carried = load_file(str(encoder))
    expected = {k for k in state if k.startswith(ENCODER_PREFIXES)}
    if set(carried) != expected:
        raise ValueError(f"{encoder} does not hold this spec's VAE encoder: {len(expected ^ set(carried))} names differ")
    state.update(carried)
    vae.model.load_state_dict(state)

    def write(folder: Path) -> None:
        shutil.copytree(model_dir, folder, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("diffusion_pytorch_model*", VAE_FILE))
        write_vae(folder, vae, torch.bfloat16)
        write_dit_shards(folder, dit_file_state(load_checkpoint(ckpt_dir)), dtype=torch.float32)

    replace_atomically(out, write)
    return out


def ship(stage: str, ckpt_dir: Path, model_dir: Path) -> Path:
    """The checkpoint's trained part into ``model_dir``, in the package's dtypes: the DiT file (bf16) for ``dit``, the
    VAE (bf16) for the VAE stages."""
    from dataclasses import replace

    from wanray.components import build_vae
    from wanray.loading import load_model_dir
    from wanray.model_writer import write_dit_shards, write_vae
    from wanray.specs import spec_for_dir
    from wanray.training.checkpoint import load_checkpoint
    from wanray.training.embedded import vae_arch_of
    from wanray.training.embedded_dit import dit_file_state

    weights = load_checkpoint(ckpt_dir)
    components = load_model_dir(model_dir, spec_for_dir(model_dir))
    if stage == "dit":
        state = dit_file_state(weights)
        shipped = {**components.dits[0].state_dict(), **(components.vaces[0].state_dict() if components.vaces else {})}
        if state.keys() != shipped.keys() or any(state[k].shape != shipped[k].shape for k in state):
            raise ValueError(f"{ckpt_dir} does not fit {model_dir}'s DiT and VACE")
        return write_dit_shards(model_dir, state, dtype=torch.bfloat16)[0]
    arch = vae_arch_of(ckpt_dir, components.spec.vae)
    vae = build_vae(arch)
    vae.model.load_state_dict(weights)
    if arch != components.spec.vae:  # a widened VAE or decoder: the model folder's spec takes its widths
        replace(components.spec, vae=arch).save(model_dir)
    return write_vae(model_dir, vae, torch.bfloat16)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wanray.training.gpu_host", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = p.add_subparsers(dest="step", required=True)
    c = steps.add_parser("carry-encoder", help="the VAE's encoder half of MODEL_DIR -> FILE")
    c.add_argument("model_dir", type=Path)
    c.add_argument("file", type=Path)
    a = steps.add_parser("assemble", help="a model folder for the DiT stage on the host")
    for name in ("model_dir", "encoder", "ckpt_dir", "out"):
        a.add_argument(name, type=Path)
    s = steps.add_parser("ship", help="the checkpoint's trained part into MODEL_DIR")
    s.add_argument("stage", choices=["dit", "vae", "vae-decoder"])
    s.add_argument("ckpt_dir", type=Path)
    s.add_argument("model_dir", type=Path)
    args = p.parse_args(argv)
    if args.step == "carry-encoder":
        print(carry_encoder(args.model_dir, args.file))
    elif args.step == "assemble":
        print(assemble(args.model_dir, args.encoder, args.ckpt_dir, args.out))
    else:
        print(ship(args.stage, args.ckpt_dir, args.model_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
