import pytest
import torch

from wanray.attention import BACKENDS, BackendUnavailable, install_attention, select_attention
from wanray.cli_generate import ATTENTION_CHOICES


def test_cli_choices_match_the_registry():
    assert ATTENTION_CHOICES == ("auto", *BACKENDS)


def test_auto_on_cpu_is_sdpa():
    assert select_attention("auto", "cpu").name == "sdpa"


def test_gpu_only_backend_on_cpu_says_so():
    with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
        select_attention("sage", "cpu")


def test_fp8_attention_on_cpu_says_it_needs_a_gpu():
    with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
        select_attention("cudnn-fp8", "cpu")


def test_auto_never_picks_a_quantized_backend(monkeypatch):
    """With every kernel installed, auto still picks an exact one: FP8 attention is only used when asked for."""
    from wanray.attention import AttentionBackend

    monkeypatch.setattr(AttentionBackend, "available", lambda self, device: True)
    assert BACKENDS["cudnn-fp8"].quantized
    assert not select_attention("auto", "cuda").quantized


@pytest.mark.parametrize("name", ["flash3", "xformers"])
def test_missing_backend_gives_install_hint(name):
    with pytest.raises(BackendUnavailable, match="not installed: .*(flash-attention|pip install)"):
        select_attention(name, "cuda")


def test_unknown_backend():
    with pytest.raises(ValueError, match="choose one of: auto, sdpa"):
        select_attention("fast", "cpu")


def test_installed_backend_replaces_diffsynth_choice(monkeypatch):
    """Even with sageattention 'importable', the DiT runs our selection (the CPU crash case)."""
    from diffsynth.models import wan_video_dit

    def broken_sage(*a, **k):
        raise RuntimeError("Input tensors must be on cuda")

    monkeypatch.setattr(wan_video_dit, "SAGE_ATTN_AVAILABLE", True)
    monkeypatch.setattr(wan_video_dit, "sageattn", broken_sage, raising=False)
    original = wan_video_dit.flash_attention
    try:
        assert install_attention("sdpa-math", "cpu") == "sdpa-math"
        q, k, v = (torch.randn(2, 10, 4 * 8) for _ in range(3))
        out = wan_video_dit.flash_attention(q, k, v, num_heads=4)
        qh, kh, vh = (t.view(2, 10, 4, 8).transpose(1, 2).double() for t in (q, k, v))
        ref = torch.softmax(qh @ kh.transpose(-1, -2) / 8**0.5, -1) @ vh
        ref = ref.transpose(1, 2).reshape(2, 10, 32)
        assert torch.allclose(out.double(), ref, atol=1e-5)
    finally:
        wan_video_dit.flash_attention = original
        install_attention("auto", "cpu")


def test_float32_rope_matches_diffsynth_float64():
    from diffsynth.models import wan_video_dit

    from wanray.accel import SP_STATE, rope_apply_fp32

    original = getattr(wan_video_dit, "diffsynth_rope_apply", wan_video_dit.rope_apply)
    f, h, w, heads, head_dim = 3, 4, 5, 4, 48
    t_f, t_h, t_w = wan_video_dit.precompute_freqs_cis_3d(head_dim)
    freqs = torch.cat([t_f[:f].view(f, 1, 1, -1).expand(f, h, w, -1), t_h[:h].view(1, h, 1, -1).expand(f, h, w, -1),
                       t_w[:w].view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1).reshape(f * h * w, 1, -1)
    x = torch.randn(2, f * h * w, heads * head_dim)
    ref = original(x.double(), freqs, heads)
    ours = rope_apply_fp32(x, freqs, heads)
    assert ((ours.double() - ref).norm() / ref.norm()).item() < 1e-6
    # a sequence-parallel shard rotates exactly its own rows of the full sequence
    try:
        SP_STATE.update(rank=1, world=2)
        shard = x[:, 30:60]
        assert torch.allclose(rope_apply_fp32(shard, freqs, heads), ours[:, 30:60], atol=1e-6)
    finally:
        SP_STATE.update(rank=0, world=1)
