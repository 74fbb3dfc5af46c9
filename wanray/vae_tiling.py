"""Tiled VAE encode/decode that stays on the device and can spread its tiles over a process group.

DiffSynth's tiled VAE moves every tile's output to the CPU and blends there in the model dtype, so a
720p x 77 decode spends much of its time in CPU bf16 additions. Here the tiles, weights and blending stay
on the compute device in float32 (same tile grid, same linear-ramp masks as DiffSynth), and with a
process group each rank decodes every ``world``-th tile and one all-reduce blends them.
"""

from __future__ import annotations

import torch


def tile_grid(height: int, width: int, size: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """DiffSynth's tile split: (h0, h1, w0, w1) boxes of ``size`` every ``stride``, the last one at the edge."""
    tasks = []
    for h in range(0, height, stride[0]):
        if h - stride[0] >= 0 and h - stride[0] + size[0] >= height:
            continue
        for w in range(0, width, stride[1]):
            if w - stride[1] >= 0 and w - stride[1] + size[1] >= width:
                continue
            tasks.append((h, h + size[0], w, w + size[1]))
    return tasks


# Peak GPU memory of a Wan VAE pass per decoded pixel x frame: 10.1 GiB for a whole 720p x 77 decode (H200).
VAE_BYTES_PER_PIXEL_FRAME = 150
DIFFSYNTH_TILES = ((30, 52), (15, 26))  # DiffSynth's fixed tiles (latent units): ~1.4 GiB at 720p x 77


def plan_tiles(height: int, width: int, frames: int, ranks: int, free_bytes: int | None = None,
               factor: int = 8) -> tuple[tuple[int, int], tuple[int, int]]:
    """(tile_size, tile_stride) in latents for a ``height`` x ``width`` x ``frames`` video on ``ranks`` GPUs.

    One tile per rank (``tiles_for_ranks``) when a tile's VAE pass fits in ``free_bytes`` (None: no limit,
    as on the CPU), else DiffSynth's small fixed tiles (e.g. Wan2.2's two experts + encoders on one 80 GB card).
    """
    size, stride = tiles_for_ranks(height // factor, width // factor, ranks)
    need = VAE_BYTES_PER_PIXEL_FRAME * size[0] * size[1] * factor * factor * frames
    return (size, stride) if free_bytes is None or need <= free_bytes else DIFFSYNTH_TILES


def tiles_for_ranks(height: int, width: int, ranks: int, overlap: int = 16) -> tuple[tuple[int, int], tuple[int, int]]:
    """(tile_size, tile_stride) in latent units that cut a height x width latent frame into ``ranks`` tiles.

    One tile per GPU of the replica, as square as the frame allows, overlapping by ``overlap`` latents for
    the blend. DiffSynth's fixed 30x52 / 15x26 tiles cut a 720p frame into 45 tiles that overlap by half:
    ~5x the pixels of one pass (measured on an H200: 31 s tiled vs 6.2 s whole-frame for 720p x 77).
    """
    rows, cols = min(((r, ranks // r) for r in range(1, ranks + 1) if ranks % r == 0),
                     key=lambda rc: abs(height / rc[0] - width / rc[1]))

    def split(length: int, n: int) -> tuple[int, int]:
        if n == 1:
            return length, length
        o = min(overlap, length // (2 * n))
        size = -(-(length + (n - 1) * o) // n)  # ceil
        return size, size - o

    (size_h, stride_h), (size_w, stride_w) = split(height, rows), split(width, cols)
    return (size_h, size_w), (stride_h, stride_w)


def _ramp(length: int, left_edge: bool, right_edge: bool, border: int, device) -> torch.Tensor:
    x = torch.ones(length, device=device)
    if border > 0:
        ramp = (torch.arange(border, device=device) + 1) / border
        if not left_edge:
            x[:border] = torch.minimum(x[:border], ramp[: min(border, length)])
        if not right_edge:
            x[-border:] = torch.minimum(x[-border:], ramp.flip(0)[-min(border, length):])
    return x


def _mask(h: int, w: int, bounds: tuple[bool, bool, bool, bool], border: tuple[int, int], device) -> torch.Tensor:
    mh = _ramp(h, bounds[0], bounds[1], border[0], device)
    mw = _ramp(w, bounds[2], bounds[3], border[1], device)
    return torch.minimum(mh[:, None], mw[None, :])[None, None, None]  # [1, 1, 1, h, w]


def _tiled(fn, x, out_channels, out_t, scale, size, stride, device, group):
    """Run ``fn`` on each tile of x [1, C, T, H, W] (in its own units), blend into [1, out_channels, out_t, ...]."""
    _, _, _, H, W = x.shape
    up = scale  # >1 decode (latent -> pixels), <1 encode
    out_h, out_w = int(H * up), int(W * up)
    values = torch.zeros(1, out_channels, out_t, out_h, out_w, device=device, dtype=torch.float32)
    weight = torch.zeros(1, 1, 1, out_h, out_w, device=device, dtype=torch.float32)
    rank, world = (0, 1) if group is None else (torch.distributed.get_rank(group), torch.distributed.get_world_size(group))
    border = (int((size[0] - stride[0]) * up), int((size[1] - stride[1]) * up))
    for i, (h0, h1, w0, w1) in enumerate(tile_grid(H, W, size, stride)):
        if i % world != rank:
            continue
        tile = fn(x[:, :, :, h0:h1, w0:w1].to(device)).float()
        th, tw = tile.shape[3], tile.shape[4]
        mask = _mask(th, tw, (h0 == 0, h1 >= H, w0 == 0, w1 >= W), border, device)
        oh, ow = int(h0 * up), int(w0 * up)
        values[:, :, :, oh : oh + th, ow : ow + tw] += tile * mask
        weight[:, :, :, oh : oh + th, ow : ow + tw] += mask
    if group is not None and world > 1:
        torch.distributed.all_reduce(values, group=group)
        torch.distributed.all_reduce(weight, group=group)
    return values / weight


def tiled_decode(vae, latents: torch.Tensor, tile_size, tile_stride, device, group=None) -> torch.Tensor:
    """latents [1, 16, T, H/8, W/8] -> video [1, 3, 4T-3, H, W] in [-1, 1] (tile sizes in latent units)."""
    out_t = latents.shape[2] * 4 - 3
    video = _tiled(lambda t: vae.model.decode(t, vae.scale), latents, 3, out_t, vae.upsampling_factor,
                   tuple(tile_size), tuple(tile_stride), device, group)
    return video.clamp_(-1, 1)


def tiled_encode(vae, video: torch.Tensor, tile_size, tile_stride, device, group=None) -> torch.Tensor:
    """video [1, 3, T, H, W] -> latents [1, 16, (T+3)//4, H/8, W/8] (tile sizes in pixels)."""
    out_t = (video.shape[2] + 3) // 4
    f = vae.upsampling_factor
    return _tiled(lambda t: vae.model.encode(t, vae.scale), video, vae.z_dim, out_t, 1 / f,
                  tuple(tile_size), tuple(tile_stride), device, group)


def device_resident_tiling(vae, group=None) -> None:
    """Make a DiffSynth ``WanVideoVAE`` tile on the device (and over ``group``); its API is unchanged."""
    from diffsynth.models.wan_video_vae import WanVideoVAE

    class DeviceTiledWanVideoVAE(WanVideoVAE):
        def tiled_decode(self, hidden_states, device, tile_size, tile_stride):
            return tiled_decode(self, hidden_states, tile_size, tile_stride, device, group).to(hidden_states.dtype)

        def tiled_encode(self, video, device, tile_size, tile_stride):
            return tiled_encode(self, video, tile_size, tile_stride, device, group).to(video.dtype)

    vae.__class__ = DeviceTiledWanVideoVAE
