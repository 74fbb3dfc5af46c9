"""The CPU-checkable parts of cuDNN FP8 attention (the kernel itself runs in tests/gpu): scaling and centring."""

import torch
import torch.nn.functional as F

from wanray.fp8_attention import E4M3_MAX, _centred, _quantize


def test_quantize_maps_the_largest_value_to_e4m3_max_and_round_trips_within_e4m3_rounding():
    x = (torch.randn(2, 300, 64) * torch.rand(1) * 10).to(torch.bfloat16)
    q8, descale = _quantize(x)
    assert q8.dtype == torch.float8_e4m3fn and descale.shape == (1, 1, 1, 1)
    assert q8.float().abs().max().item() == E4M3_MAX
    descale = descale.squeeze()
    back, exact = q8.float() * descale, x.float()
    normal = exact.abs() > descale * 2**-6 * 2  # E4M3 normals: 3 mantissa bits, relative error <= 2^-4
    # E4M3's rounding (2^-4) plus the bf16 rounding of x · scale before the cast (2^-8 at most)
    assert ((back - exact).abs()[normal] <= exact.abs()[normal] * (2**-4 + 2**-8)).all()
    assert (back - exact).abs().max() <= descale * 2**-9 + exact.abs().max() * 2**-4


def test_centred_keys_leave_attention_unchanged():
    """Each query's scores shift by one constant, so softmax and the output are the same."""
    b, s, n, d = 1, 200, 2, 32
    q, v = torch.randn(b, s, n * d), torch.randn(b, s, n * d)
    k = torch.randn(b, s, n * d) + 4 * torch.randn(1, 1, n * d)  # a large shared offset, as trained keys have
    centred = _centred(k)
    assert centred.mean(dim=1).abs().max() < 1e-5

    def attention(k):
        heads = lambda t: t.view(b, s, n, d).transpose(1, 2).double()  # noqa: E731
        return F.scaled_dot_product_attention(heads(q), heads(k), heads(v))

    assert torch.allclose(attention(centred), attention(k), atol=1e-6)  # float32 centring, float64 attention


def test_the_ops_shapes_for_torch_compile_match_their_contract():
    """torch.compile plans with the ops' fake implementations; they must promise what the kernels return."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    b, s, n, d = 2, 77, 4, 48
    with FakeTensorMode():
        q, k, v = (torch.empty(b, s, n * d, dtype=torch.bfloat16) for _ in range(3))
        out, stats = torch.ops.wanray.fp8_attention_forward(q, k, v, n)
        grads = torch.ops.wanray.attention_backward_bf16(out, q, k, v, out, stats, n)
    assert out.shape == q.shape and out.dtype == torch.bfloat16
    assert stats.shape == (b, n, s, 1) and stats.dtype == torch.float32
    assert [g.shape for g in grads] == [q.shape] * 3
