"""strategy.compile: the DiT blocks are torch.compiled (regionally) and train exactly as eager ones do."""

import torch

from wanray.training.config import apply_overrides
from wanray.training.presets import embedded_lora_smoke


def test_compiled_blocks_give_the_eager_loss_and_gradients(tmp_path, monkeypatch, loss_and_grads):
    from wanray.training.model import build_training_model

    monkeypatch.setenv("WANRAY_COMPILE_CACHE", str(tmp_path / "inductor"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    eager = build_training_model(embedded_lora_smoke(), torch.device("cpu"))
    compiled = build_training_model(apply_overrides(embedded_lora_smoke(), ["strategy.compile=true"]),
                                    torch.device("cpu"))
    assert all(block._compiled_call_impl is not None for block in compiled.module.dit.blocks)
    assert all(block._compiled_call_impl is None for block in eager.module.dit.blocks)

    results = loss_and_grads([eager, compiled])
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
    assert abs(eager_loss - compiled_loss) <= 1e-4 * abs(eager_loss)
    assert len(eager_grads) == len(compiled_grads) > 0
    for a, b in zip(eager_grads, compiled_grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6)
    assert (tmp_path / "inductor").is_dir()  # the on-disk cache a restarted worker reuses
