"""A wider VAE (decoder, or the whole VAE) that starts as the old one: same output, new channels that can learn."""

import dataclasses

import pytest
import torch

from wanray.components import build_vae
from wanray.specs import VAEArch
from wanray.training.vae_widen import widen_decoder, widen_vae

ARCH = VAEArch(dim=8)


@pytest.fixture
def vae():
    """A small Wan VAE whose every weight is random (the gains and attention's zero-initialised projection too),
    so a widening that got a scale or a block layout wrong shows."""
    vae = build_vae(ARCH)
    with torch.no_grad():
        for p in vae.model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1 if p.dim() == 4 and p.shape[1:] == (1, 1, 1) else 0))
    return vae


def _decode(vae, decoder, z):
    old, vae.model.decoder = vae.model.decoder, decoder
    try:
        vae.model.clear_cache()
        return vae.model.decode(z, vae.scale)  # [B, 3, 1 + 4 (T'-1), 8 H', 8 W']
    finally:
        vae.model.decoder = old


@pytest.mark.parametrize("mult", [(1, 2, 8, 8), (2, 3, 6, 6), (1, 2, 4, 4)])
def test_a_widened_decoder_decodes_what_the_old_one_decodes(vae, mult):
    wider = widen_decoder(vae.model.decoder, dataclasses.replace(ARCH, decoder_dim_mult=mult))
    z = torch.randn(1, 16, 3, 4, 4)  # [B, z, T', H', W']: 9 frames of 32x32
    with torch.no_grad():
        before, after = _decode(vae, vae.model.decoder, z), _decode(vae, wider, z)
    assert after.shape == before.shape == (1, 3, 9, 32, 32)
    assert (after - before).abs().max() < 1e-4 * before.abs().max()
    grown = sum(p.numel() for p in wider.parameters()) - sum(p.numel() for p in vae.model.decoder.parameters())
    assert (grown > 0) == (mult != ARCH.decoder_mult)


def test_the_new_channels_get_gradients_and_the_decoder_moves_away_from_the_old(vae):
    wider = widen_decoder(vae.model.decoder, dataclasses.replace(ARCH, decoder_dim_mult=(1, 2, 8, 8)))
    old_width = vae.model.decoder.conv1.weight.shape[0]
    assert not wider.conv1.weight[old_width:].any()  # new channels start at zero
    z, target = torch.randn(1, 16, 2, 4, 4), torch.rand(1, 3, 5, 32, 32) * 2 - 1
    (_decode(vae, wider, z) - target).pow(2).mean().backward()
    assert wider.conv1.weight.grad[old_width:].abs().sum() > 0  # they can learn: zero weights, non-zero gradient


@pytest.mark.parametrize("mult,message", [((1, 2, 3, 3), "would narrow"), ((1, 4, 4, 8), "drops the layers")])
def test_a_decoder_that_cannot_start_as_the_old_one_is_refused(vae, mult, message):
    with pytest.raises(ValueError, match=message):
        widen_decoder(vae.model.decoder, dataclasses.replace(ARCH, decoder_dim_mult=mult))


@pytest.mark.parametrize("arch", [VAEArch(dim=12), VAEArch(dim=12, decoder_dim_mult=(2, 2, 4, 4))],
                         ids=["dim12", "dim12-decoder2244"])
def test_a_widened_vae_encodes_and_decodes_what_the_old_one_does(arch):
    old = build_vae(dataclasses.replace(arch, dim=ARCH.dim))
    with torch.no_grad():  # every weight random, as the fixture's
        for p in old.model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1 if p.dim() == 4 and p.shape[1:] == (1, 1, 1) else 0))
    wider = widen_vae(old.model, arch)
    assert wider.encoder.conv1.weight.shape[0] == 12 and wider.dim == 12
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1  # [B, 3, T, H, W]
    z = torch.randn(1, 16, 3, 4, 4)  # [B, z, T', H', W']
    with torch.no_grad():
        before = old.model.encode(video, old.scale), old.model.decode(z, old.scale)
        after = wider.encode(video, old.scale), wider.decode(z, old.scale)
    for a, b in zip(after, before):
        assert a.shape == b.shape
        assert (a - b).abs().max() < 1e-4 * b.abs().max()
    new_channels = wider.encoder.downsamples[0].residual[2].weight[ARCH.dim:]  # the first conv's new outputs
    assert not new_channels.any()


def test_a_widened_vae_learns_in_its_new_channels():
    old = build_vae(ARCH)
    wider = widen_vae(old.model, VAEArch(dim=12)).train().requires_grad_(True)
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    mu = wider.encode(video, old.scale)
    (wider.decode(mu, old.scale) - video).abs().mean().backward()
    # zero weights that write the new channels, non-zero gradients: in the encoder and the decoder alike
    assert wider.encoder.conv1.weight.grad[ARCH.dim:].abs().sum() > 0
    assert wider.decoder.conv1.weight.grad[4 * ARCH.dim:].abs().sum() > 0


@pytest.mark.parametrize("arch,message", [(VAEArch(dim=6), "narrow"), (VAEArch(dim=12, z_dim=8), "z_dim")])
def test_a_vae_that_cannot_start_as_the_old_one_is_refused(arch, message):
    with pytest.raises(ValueError, match=message):
        widen_vae(build_vae(ARCH).model, arch)


def test_a_model_folder_with_a_wider_decoder_is_written_checked_and_loaded(tmp_path, tiny_spec):
    from wanray.loading import check_model_dir, load_model_dir
    from wanray.model_writer import write_random_model_dir
    from wanray.specs import spec_for_dir

    spec = dataclasses.replace(tiny_spec, vae=dataclasses.replace(tiny_spec.vae, decoder_dim_mult=(1, 2, 8, 8)))
    root = write_random_model_dir(tmp_path / "model", spec, seed=2)
    assert spec_for_dir(root).vae == spec.vae  # the spec file keeps the widths through its JSON
    check_model_dir(root, spec)
    vae = load_model_dir(root, spec).vae
    assert vae.model.decoder.conv1.weight.shape[0] == 8 * 8 and vae.model.encoder.conv1.weight.shape[0] == 8
    with pytest.raises(Exception, match="shape|size"):  # the narrow spec does not fit the wide files
        check_model_dir(root, tiny_spec)
