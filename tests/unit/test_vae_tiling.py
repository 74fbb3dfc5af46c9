"""VAE tiles: one per GPU of the replica, and the device-resident blend equals DiffSynth's own."""

import random

import pytest
import torch

from wanray import components
from wanray.specs import embedded
from wanray.vae_tiling import DIFFSYNTH_TILES, plan_tiles, tile_grid, tiled_decode, tiles_for_ranks


@pytest.mark.parametrize("ranks", [1, 2, 3, 4, 8])
def test_tiles_for_ranks_gives_one_tile_per_rank_covering_the_frame(ranks):
    rng = random.Random()
    for _ in range(20):
        height, width = rng.randint(16, 200), rng.randint(16, 200)
        size, stride = tiles_for_ranks(height, width, ranks)
        tiles = tile_grid(height, width, size, stride)
        assert len(tiles) == ranks, (height, width, size, stride)
        covered = torch.zeros(height, width, dtype=torch.bool)
        for h0, h1, w0, w1 in tiles:
            covered[h0:h1, w0:w1] = True
        assert covered.all()
        assert all(si - st <= 16 for si, st in zip(size, stride))  # overlap: only what the blend needs


def test_a_720p_frame_on_four_gpus_is_cut_two_by_two():
    size, stride = tiles_for_ranks(90, 160, 4)
    assert size == (53, 88) and stride == (37, 72)


def test_tiles_fall_back_to_diffsynths_small_ones_when_a_tile_would_not_fit():
    gib = 2**30
    assert plan_tiles(720, 1280, 77, 1) == ((90, 160), (90, 160))  # CPU: no limit, the whole frame
    assert plan_tiles(720, 1280, 77, 1, free_bytes=12 * gib) == ((90, 160), (90, 160))  # measured ~10.1 GiB
    assert plan_tiles(720, 1280, 77, 1, free_bytes=8 * gib) == DIFFSYNTH_TILES
    assert plan_tiles(720, 1280, 77, 4, free_bytes=4 * gib) == ((53, 88), (37, 72))  # a quarter each fits


def test_device_resident_tiled_decode_equals_diffsynths():
    vae = components.build_vae(embedded().vae)
    latents = torch.randn(1, 16, 2, 8, 12)
    size, stride = (6, 8), (4, 6)
    with torch.no_grad():
        theirs = vae.tiled_decode(latents, "cpu", size, stride)  # DiffSynth's WanVideoVAE, blended on the CPU
        ours = tiled_decode(vae, latents, size, stride, torch.device("cpu"))
        whole = tiled_decode(vae, latents, (8, 12), (8, 12), torch.device("cpu"))
        direct = vae.model.decode(latents, vae.scale).clamp(-1, 1)
    assert ours.shape == theirs.shape == (1, 3, 5, 64, 96)
    torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(whole, direct, atol=1e-6, rtol=1e-6)  # one tile is the untiled decode
