"""Sequence parallel (Ulysses) and CFG parallel over gloo processes equal a single process."""

import os

import numpy as np
import pytest
import torch.multiprocessing as mp

from wanray.parallel import ParallelConfig, check_parallel
from wanray.raycluster.local import free_port
from wanray.specs import embedded, wan21_i2v_14b_720p

# One VAE tile, as one process decodes by default: the DiT's parallel result is compared, not the VAE's seams
# (a 2-rank default of one tile per rank is checked in tests/integration/serving/test_serving_parallel.py).
REQUEST = dict(prompt="a girl dances the twist", height=64, width=64, frames=9, steps=2, seed=11, cfg=3.0,
               tile_size=(8, 8), tile_stride=(8, 8))


def _worker(rank, world, port, ulysses, cfg_degree, photo, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch

    torch.set_num_threads(1)
    from wanray import GenerationConfig, ModelConfig
    from wanray.generation import WanGenerator
    from wanray.video import frames_to_array

    gen = WanGenerator.load(ModelConfig(device="cpu", ulysses_degree=ulysses, cfg_degree=cfg_degree))
    result = gen.generate(GenerationConfig(image=photo, **REQUEST))
    np.save(os.path.join(out_dir, f"rank{rank}.npy"), frames_to_array(result.frames))
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("ulysses, cfg_degree", [(2, 1), (1, 2)])
def test_parallel_matches_single_process(embedded_generator, photo, tmp_path, ulysses, cfg_degree):
    from wanray import GenerationConfig
    from wanray.video import frames_to_array

    reference = frames_to_array(embedded_generator.generate(GenerationConfig(image=photo, **REQUEST)).frames)
    world = ulysses * cfg_degree
    mp.start_processes(_worker, args=(world, free_port(), ulysses, cfg_degree, str(photo), str(tmp_path)),
                       nprocs=world, start_method="spawn")
    outputs = [np.load(tmp_path / f"rank{r}.npy") for r in range(world)]
    for out in outputs:
        assert out.shape == reference.shape
        assert np.array_equal(out, outputs[0])  # every rank returns the same frames
    diff = np.abs(outputs[0].astype(int) - reference.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8  # float32 sums in another order; uint8 frames


def test_degrees_are_checked_with_the_arithmetic():
    spec = wan21_i2v_14b_720p()
    with pytest.raises(ValueError, match=r"ulysses_degree \(3\) must divide the DiT's attention heads \(40\): 40 % 3 = 1"):
        check_parallel(ParallelConfig(ulysses_degree=3), spec, world_size=3)
    with pytest.raises(ValueError, match=r"ulysses_degree \(2\) \* cfg_degree \(2\) = 4 != WORLD_SIZE \(2\)"):
        check_parallel(ParallelConfig(ulysses_degree=2, cfg_degree=2), spec, world_size=2)
    with pytest.raises(ValueError, match=r"only 2 are visible"):
        check_parallel(ParallelConfig(ulysses_degree=4), spec, world_size=4, gpus=2)
    with pytest.raises(ValueError, match="cfg_degree must be 1 or 2"):
        ParallelConfig(cfg_degree=3)
    check_parallel(ParallelConfig(ulysses_degree=4), embedded(), world_size=4)
    assert ParallelConfig.for_gpus(4) == ParallelConfig(ulysses_degree=2, cfg_degree=2)
    assert ParallelConfig.for_gpus(4, use_cfg=False) == ParallelConfig(ulysses_degree=4)
