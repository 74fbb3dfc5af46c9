"""A DeepSpeed checkpoint is read with torch's weights-only unpickler before DeepSpeed unpickles it whole."""

import os
import pickle
import random

import pytest
import torch

from wanray.training.engine import check_deepspeed_files


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_deepspeeds_own_state_passes_and_anything_else_is_refused_unrun(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    n = random.randint(2, 9)
    state = {"optimizer_state_dict": {"state": {0: {"exp_avg": torch.randn(n)}}}, "zero_stage": ZeroStageEnum(2),
             "loss_scaler": LossScaler(1.0), "ds_version": "0.19"}
    torch.save(state, tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    torch.save({"module": {"w": torch.randn(n, n)}}, tmp_path / "mp_rank_00_model_states.pt")
    check_deepspeed_files(tmp_path)

    torch.save({"module": {"w": torch.randn(n)}, "extra": RunsCode()}, tmp_path / "mp_rank_00_model_states.pt")
    with pytest.raises(ValueError, match=r"mp_rank_00_model_states.pt: refused .* holds (posix|os)\.system"):
        check_deepspeed_files(tmp_path)
    (tmp_path / "mp_rank_00_model_states.pt").write_bytes(pickle.dumps(RunsCode()))  # a bare pickle, not torch's zip
    with pytest.raises(ValueError, match="refused to resume from it"):
        check_deepspeed_files(tmp_path)
