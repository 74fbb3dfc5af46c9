"""wanray.datasets: the multimodal training set (see datasets/README.md).

- ``schema``: the manifest (``metadata.csv``/``.parquet``, DiffSynth columns + ``id``), reading and checks
- ``split``: deterministic 9:1 train/test from a hash of the id
- ``validate``: every row checked, a JSON report and a quarantine list (``wanray datasets validate``)
- ``synth``: procedural photo -> dancing anime entries on Ray (``wanray datasets synth``); ``pose``,
  ``character``, ``scenes``, ``raster``, ``render`` draw them; ``pose.render_pose_video`` for inference
- ``ingest``: Ray Data rows for Ray Train (``read_split``, ``row_to_sample``)
- ``cache``: the latent cache of the frozen encoders (``wanray datasets cache``, ``read_latent_cache``)

Nothing is imported here: Ray and torch load only in the modules that need them.
"""
