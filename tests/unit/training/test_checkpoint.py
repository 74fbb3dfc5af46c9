"""wanray.training.checkpoint: the one checkpoint format, exact (resumes bit for bit) and portable (small)."""

import pytest
import torch

from wanray.training.checkpoint import OPTIMIZER, WEIGHTS, load_checkpoint, save_checkpoint


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(256, 192), torch.nn.GELU(), torch.nn.Linear(192, 8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
    return model, optimizer, scheduler


def _train(model, optimizer, scheduler, batches) -> None:
    for x, y in batches:
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def _batches(n: int):
    return [(torch.randn(16, 256), torch.randn(16, 8)) for _ in range(n)]


def test_an_exact_checkpoint_resumes_the_run_bit_for_bit(tmp_path):
    seed, batches = int(torch.randint(0, 2**31, ())), _batches(6)
    uninterrupted = _model_and_optimizer(seed)
    _train(*uninterrupted, batches)

    first = _model_and_optimizer(seed)
    _train(*first, batches[:3])
    save_checkpoint(tmp_path, dict(first[0].named_parameters()), first[1], first[2])
    resumed = _model_and_optimizer(seed + 1)  # other initial weights: everything must come from the folder
    resumed[0].load_state_dict(load_checkpoint(tmp_path, resumed[1], resumed[2]))
    _train(*resumed, batches[3:])
    for a, b in zip(uninterrupted[0].parameters(), resumed[0].parameters()):
        assert torch.equal(a, b)


def test_a_portable_checkpoint_is_a_third_of_the_size_and_close(tmp_path):
    seed = int(torch.randint(0, 2**31, ()))
    model, optimizer, scheduler = _model_and_optimizer(seed)
    _train(model, optimizer, scheduler, _batches(4))
    weights = dict(model.named_parameters())
    save_checkpoint(tmp_path / "exact", weights, optimizer, scheduler)
    save_checkpoint(tmp_path / "portable", weights, optimizer, scheduler, precision="portable")
    size = {p: sum((tmp_path / p / f).stat().st_size for f in (WEIGHTS, OPTIMIZER)) for p in ("exact", "portable")}
    assert size["portable"] < 0.4 * size["exact"]

    restored = _model_and_optimizer(seed + 1)
    loaded = load_checkpoint(tmp_path / "portable", restored[1], restored[2])
    for name, value in weights.items():  # bf16: 8 significant bits
        assert torch.allclose(loaded[name], value.detach(), rtol=2**-8, atol=0)
    before, after = optimizer.state_dict()["state"], restored[1].state_dict()["state"]
    for i, state in before.items():
        m, v = state["exp_avg"], state["exp_avg_sq"]
        # e4m3 (3 mantissa bits) for the first moment, relative to the tensor's largest value; the second moment's
        # root in e5m2 (2 bits): each non-zero value stays non-zero and within ~25% (12.5% on the root, squared)
        assert (after[i]["exp_avg"] - m).abs().max() <= 2**-4 * m.abs().max()
        nonzero = v > 0
        assert (after[i]["exp_avg_sq"][nonzero] > 0).all()
        ratio = after[i]["exp_avg_sq"][nonzero] / v[nonzero]
        assert ratio.min() > 0.75 and ratio.max() < 1.3
        assert torch.equal(after[i]["step"], state["step"])
    assert restored[2].state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"]


def test_an_unknown_precision_is_refused(tmp_path):
    model, optimizer, _ = _model_and_optimizer(0)
    try:
        save_checkpoint(tmp_path, dict(model.named_parameters()), optimizer, precision="fp4")
    except ValueError as error:
        assert "exact" in str(error) and "portable" in str(error) and "'fp4'" in str(error)
    else:
        raise AssertionError("precision='fp4' was accepted")


def test_a_checkpoint_without_its_optimizer_state_loads_its_weights_and_resumes_only_with_fresh_moments(tmp_path):
    model, optimizer, scheduler = _model_and_optimizer(int(torch.randint(0, 2**31, ())))
    _train(model, optimizer, scheduler, _batches(1))
    save_checkpoint(tmp_path, dict(model.named_parameters()), optimizer, precision="portable")
    (tmp_path / OPTIMIZER).unlink()  # as a one-call GPU host run returns it: weights only, to ship
    weights = load_checkpoint(tmp_path)
    assert all(torch.allclose(weights[n], p.detach(), rtol=2**-8, atol=0) for n, p in model.named_parameters())
    fresh = _model_and_optimizer(1)
    with pytest.raises(FileNotFoundError, match="no optimizer state .* cannot be resumed"):
        load_checkpoint(tmp_path, fresh[1])
    # asked for, it resumes with the optimizer as given (fresh moments); one that has its state still restores it
    resumed = load_checkpoint(tmp_path, fresh[1], fresh_moments=True)
    assert resumed.keys() == weights.keys() and fresh[1].state_dict()["state"] == {}
    save_checkpoint(tmp_path, dict(model.named_parameters()), optimizer, precision="portable")
    load_checkpoint(tmp_path, fresh[1], fresh_moments=True)
    assert fresh[1].state_dict()["state"].keys() == optimizer.state_dict()["state"].keys() != set()
