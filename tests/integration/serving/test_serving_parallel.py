"""A replica spread over two ranks (CPU, gloo) returns the frames one process makes."""

import numpy as np
import ray

from wanray import GenerationConfig, ModelConfig
from wanray.video import frames_to_array

REQUEST = dict(prompt="a boy dances the robot", height=64, width=64, frames=5, steps=2, seed=9, cfg=3.0)
WHOLE_FRAME = dict(tile_size=(8, 8), tile_stride=(8, 8))  # one VAE tile, as one process decodes by default


@ray.remote(num_cpus=1)
class TwoRankReplica:
    """Stands in for a Serve replica: this actor is rank 0, ParallelGenerator starts rank 1."""

    def __init__(self, ulysses: int, cfg: int):
        import torch

        torch.set_num_threads(1)
        from wanray.serving.parallel_engine import ParallelGenerator

        self.generator = ParallelGenerator(ModelConfig(device="cpu", ulysses_degree=ulysses, cfg_degree=cfg),
                                           gpu=False)

    def generate(self, photo: str, **tiles):
        steps = []
        result = self.generator.generate(GenerationConfig(image=photo, **REQUEST, **tiles),
                                         progress=lambda i, n: steps.append(i))
        return frames_to_array(result.frames), steps, result.info

    def generate_cancelled(self, photo: str, at_step: int, **tiles):
        """A job whose client cancels it after ``at_step`` steps (the worker's progress callback raises)."""
        from wanray.serving.worker import JobCancelled

        def progress(step, steps):
            if step == at_step:
                raise JobCancelled()

        try:
            self.generator.generate(GenerationConfig(image=photo, **REQUEST, **tiles), progress=progress)
        except JobCancelled:
            return "cancelled"
        return "finished"


def test_two_rank_replica_matches_one_process(ray_cluster, embedded_generator, photo):
    reference = frames_to_array(embedded_generator.generate(GenerationConfig(image=photo, **REQUEST)).frames)
    replica = TwoRankReplica.remote(ulysses=2, cfg=1)
    frames, steps, info = ray.get(replica.generate.remote(str(photo), **WHOLE_FRAME), timeout=900)
    assert info["parallel"] == {"ulysses": 2, "cfg": 1} and steps == [1, 2]
    assert frames.shape == reference.shape
    assert np.abs(frames.astype(int) - reference.astype(int)).mean() < 0.5
    # by default each rank decodes its own VAE tile (here 8x5 latents, overlapping by 2), blended across ranks
    split, _, info = ray.get(replica.generate.remote(str(photo)), timeout=900)
    # a job cancelled after step 1: rank 1 stops there too (it would otherwise wait in step 2's collective for the
    # group's timeout), and the replica serves the next request as before
    assert ray.get(replica.generate_cancelled.remote(str(photo), at_step=1, **WHOLE_FRAME), timeout=120) == "cancelled"
    again, _, _ = ray.get(replica.generate.remote(str(photo), **WHOLE_FRAME), timeout=120)
    ray.kill(replica)
    assert np.array_equal(again, frames)
    assert info["tiled_vae"] == {"tile_size": [8, 5], "tile_stride": [8, 3]}
    assert np.abs(split.astype(int) - reference.astype(int)).mean() < 20  # only the seam's view differs
