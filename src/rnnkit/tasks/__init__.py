"""Synthetic sequence tasks and their training loops.

* memory benchmarks: the adding problem (:mod:`~rnnkit.tasks.adding`) and the copy task
  (:mod:`~rnnkit.tasks.copying`), trained by :mod:`~rnnkit.tasks.memory`;
* transduction for encoder-decoders: reverse or sort a digit string (:mod:`~rnnkit.tasks.transduction`),
  trained by :mod:`~rnnkit.tasks.train_transduction`;
* the masked per-step loss for padded batches (:mod:`~rnnkit.tasks.losses`).
"""
