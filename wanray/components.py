"""Build DiffSynth's real Wan modules from a spec, at any size.

DiffSynth's classes hard-code a few sizes in their constructors (the VAE base width, the CLIP tower);
these factories build the same classes with the spec's sizes. ``empty=True`` builds parameters on the
meta device (no memory, no init) for shape checks and for loading with ``assign=True``.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from wanray.specs import DiTArch, ImageEncoderArch, ModelSpec, TextEncoderArch, VaceArch, VAEArch

# State-dict converters: published (original Wan) key names -> DiffSynth module key names.


def convert_dit_keys(state_dict: dict) -> dict:
    """Original Wan DiT keys equal DiffSynth's; VACE keys live in the same file and are split off."""
    out = {}
    for name, value in state_dict.items():
        if name.startswith("vace"):
            continue
        out[name.removeprefix("model.")] = value
    return out


def convert_vace_keys(state_dict: dict) -> dict:
    return {name: value for name, value in state_dict.items() if name.startswith("vace")}


def convert_vae_keys(state_dict: dict) -> dict:
    if "model_state" in state_dict:
        state_dict = state_dict["model_state"]
    return {"model." + name: value for name, value in state_dict.items()}


def convert_clip_keys(state_dict: dict) -> dict:
    """The published CLIP file also holds the text tower (``textual.*``), which Wan never runs."""
    return {"model." + name: value for name, value in state_dict.items() if not name.startswith("textual.")}


def convert_t5_keys(state_dict: dict) -> dict:
    return dict(state_dict)


def _init_context(empty: bool):
    if not empty:
        return contextlib.nullcontext()
    from diffsynth.core.vram.initialization import skip_model_initialization

    return skip_model_initialization()


def build_dit(arch: DiTArch, empty: bool = False) -> torch.nn.Module:
    from diffsynth.models.wan_video_dit import WanModel

    with _init_context(empty):
        return WanModel(**arch.model_kwargs())


def build_vace(vace: VaceArch, dit: DiTArch, empty: bool = False) -> torch.nn.Module:
    from diffsynth.models.wan_video_vace import VaceWanModel

    with _init_context(empty):
        return VaceWanModel(
            vace_layers=tuple(vace.layers),
            vace_in_dim=vace.in_dim,
            patch_size=tuple(dit.patch_size),
            has_image_input=dit.has_image_input,
            dim=dit.dim,
            num_heads=dit.num_heads,
            ffn_dim=dit.ffn_dim,
            eps=dit.eps,
        )


def build_text_encoder(arch: TextEncoderArch, empty: bool = False) -> torch.nn.Module:
    from diffsynth.models.wan_video_text_encoder import WanTextEncoder

    with _init_context(empty):
        return WanTextEncoder(**arch.model_kwargs()).eval()


def build_vae(arch: VAEArch, empty: bool = False) -> torch.nn.Module:
    from diffsynth.models.wan_video_vae import VideoVAE_, WanVideoVAE

    # WanVideoVAE always builds the 96-wide VAE: build that without memory, then swap in ours.
    from diffsynth.core.vram.initialization import skip_model_initialization

    with skip_model_initialization():
        vae = WanVideoVAE(z_dim=arch.z_dim)
    with _init_context(empty):
        vae.model = VideoVAE_(dim=arch.dim, z_dim=arch.z_dim).eval().requires_grad_(False)
        if arch.decoder_dim_mult is not None:
            vae.model.decoder = build_vae_decoder(arch).eval().requires_grad_(False)
    return vae.eval()


def build_vae_decoder(arch: VAEArch) -> torch.nn.Module:
    """The VAE's ``Decoder3d`` at ``arch.decoder_mult`` (``VideoVAE_`` builds it at the encoder's widths)."""
    from diffsynth.models.wan_video_vae import Decoder3d

    return Decoder3d(arch.dim, arch.z_dim, list(arch.decoder_mult), temperal_upsample=[True, True, False])


def build_image_encoder(arch: ImageEncoderArch, empty: bool = False) -> torch.nn.Module:
    from diffsynth.core.vram.initialization import skip_model_initialization
    from diffsynth.models.wan_video_image_encoder import WanImageEncoder, clip_xlm_roberta_vit_h_14

    with skip_model_initialization():
        encoder = WanImageEncoder()
    with _init_context(empty):
        encoder.model, encoder.transforms = clip_xlm_roberta_vit_h_14(
            pretrained=False,
            return_transforms=True,
            return_tokenizer=False,
            dtype=torch.float32,
            device="cpu",
            **arch.model_kwargs(),
        )
    return encoder.eval()


def component_builders(spec: ModelSpec) -> dict[str, Callable[[bool], torch.nn.Module]]:
    """Name -> builder(empty) for every module the spec has (DiT experts share one builder)."""
    builders: dict[str, Callable[[bool], torch.nn.Module]] = {
        "text_encoder": lambda empty: build_text_encoder(spec.text_encoder, empty),
        "vae": lambda empty: build_vae(spec.vae, empty),
        "dit": lambda empty: build_dit(spec.dit, empty),
    }
    if spec.uses_clip:
        builders["image_encoder"] = lambda empty: build_image_encoder(spec.image_encoder, empty)
    if spec.vace is not None:
        builders["vace"] = lambda empty: build_vace(spec.vace, spec.dit, empty)
    return builders


def expected_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}
