"""Widen a trained Wan VAE without changing what it computes: the start of a wider VAE's fine-tune.

- ``widen_decoder``: the decoder-only stage keeps the encoder (the latents a trained DiT learned) and retrains a
  wider decoder.
- ``widen_vae``: the whole VAE at a larger base width (``VAEArch.dim``), encoder too. At step 0 its latents are the
  old ones, so the shipped DiT still works on them; as the wider encoder trains they move away gradually, and the
  DiT follows by fine-tuning rather than training again from scratch.

A new, wider VAE trained from scratch would first have to relearn what the old one knows; this one starts as the old
one exactly (to float32 rounding) and only adds capacity, as Net2Net's function-preserving widening:

- every old weight is copied into the first channels of its wider layer (the decoder's ``time_conv`` and
  ``to_qkv`` keep their 2 and 3 blocks of channels, each block widened);
- weights that write a new channel are zero, so new channels hold zeros until training moves them; weights that
  read a new channel keep their fresh random init, which is what gives the zero-weights a gradient;
- each ``RMS_norm`` scales by sqrt(channels): its gains shrink by sqrt(old / new) to cancel that, and attention's
  queries grow by sqrt(new / old) to cancel its 1/sqrt(channels) softmax scale;
- a residual shortcut that was the identity and becomes a 1x1 convolution (in and out widths now differ) starts
  as the identity on the old channels.
"""

from __future__ import annotations

import math

import torch

from wanray.components import build_vae, build_vae_decoder
from wanray.specs import VAEArch


def _out_blocks(name: str, old_state: dict[str, torch.Tensor]) -> int:
    """How many equal blocks a layer's output channels form: to_qkv's q, k, v; an upsampling time_conv's two time
    slots (its weight [2 C, C, 3, 1, 1]; a downsampling one's is [C, C, 3, 1, 1])."""
    if ".time_conv." in name:
        weight = old_state[name.rsplit(".", 1)[0] + ".weight"]
        return weight.shape[0] // weight.shape[1]
    return 3 if ".to_qkv." in name else 1


def _widened(name: str, old: torch.Tensor, fresh: torch.Tensor, blocks: int) -> torch.Tensor:
    """``fresh`` (the wider layer's random init) with ``old`` in its first channels, as the module docstring says."""
    if name.endswith("gamma"):  # RMS_norm gains [C, 1, ...]: scale sqrt(C) cancelled for the old channels
        shrink = math.sqrt(old.shape[0] / fresh.shape[0])
        new = torch.full_like(fresh, shrink)
        new[: old.shape[0]] = old * shrink
        return new
    old_out, new_out = old.shape[0] // blocks, fresh.shape[0] // blocks
    new = torch.zeros_like(fresh)  # what writes a new output channel stays zero
    target = new.view(blocks, new_out, *fresh.shape[1:])[:, :old_out]  # [blocks, old_out, in, ...]
    source = old.view(blocks, old_out, *old.shape[1:])
    if old.dim() > 1:  # a weight: old outputs read the old inputs with the old weights, the new inputs with fresh ones
        target.copy_(fresh.view(blocks, new_out, *fresh.shape[1:])[:, :old_out])
        target[:, :, : old.shape[1]] = source
    else:
        target.copy_(source)
    if ".to_qkv." in name:  # queries: softmax's 1/sqrt(C) scale cancelled
        target[0] *= math.sqrt(new_out / old_out)
    return new


def widen_decoder(decoder: torch.nn.Module, arch: VAEArch) -> torch.nn.Module:
    """A ``Decoder3d`` of ``arch`` (each stage at least as wide as ``decoder``'s) that decodes as ``decoder`` does;
    ``decoder`` is not changed."""
    wider = build_vae_decoder(arch).to(next(decoder.parameters()).device)
    wider.load_state_dict(_widened_state(decoder, wider, f"decoder_dim_mult {arch.decoder_mult}"))
    return wider


def widen_vae(model: torch.nn.Module, arch: VAEArch) -> torch.nn.Module:
    """A ``VideoVAE_`` of ``arch`` (base width and decoder stages at least ``model``'s, the same ``z_dim``) that
    encodes and decodes as ``model`` does; ``model`` is not changed."""
    if arch.z_dim != model.z_dim:
        raise ValueError(f"z_dim {arch.z_dim} != the VAE's {model.z_dim}: the latent channels are the DiT's input "
                         "and output, so a widened VAE keeps them")
    if arch.dim < model.dim:
        raise ValueError(f"VAE base width {arch.dim} would narrow the VAE's {model.dim}: widening only adds channels")
    wider = build_vae(arch).model.to(next(model.parameters()).device)
    wider.load_state_dict(_widened_state(model, wider, f"VAE base width {arch.dim}"))
    return wider.train(model.training).requires_grad_(any(p.requires_grad for p in model.parameters()))


def _widened_state(old_module: torch.nn.Module, wider: torch.nn.Module, what: str) -> dict[str, torch.Tensor]:
    """``wider``'s state dict holding ``old_module``'s function, layer by layer (the module docstring's rules)."""
    old, fresh = old_module.state_dict(), wider.state_dict()
    lost = [name for name in old if name not in fresh]
    if lost:  # a residual shortcut that was a convolution and would become the identity: its mapping is lost
        raise ValueError(f"{what} drops the layers {lost[:3]} of the VAE being widened: keep each stage's input and "
                         "output widths different where they were")
    state = {}
    for name, tensor in fresh.items():
        if name in old and old[name].shape == tensor.shape:
            state[name] = old[name].clone()
        elif name in old:
            if any(n < o for n, o in zip(tensor.shape, old[name].shape)):
                raise ValueError(f"VAE layer {name} would narrow from {tuple(old[name].shape)} to "
                                 f"{tuple(tensor.shape)}: every stage must keep at least its width")
            state[name] = _widened(name, old[name], tensor, _out_blocks(name, old))
        elif ".shortcut." in name:  # an identity shortcut that became a 1x1 convolution: identity on the old ones
            state[name] = torch.zeros_like(tensor)
            if name.endswith("weight"):
                width = old_module.get_submodule(name.split(".shortcut.")[0]).in_dim  # the residual block's
                state[name][:width, :width, 0, 0, 0] = torch.eye(width)  # a CausalConv3d of kernel 1
        else:
            raise ValueError(f"VAE layer {name} has no counterpart in the VAE being widened")
    return state
