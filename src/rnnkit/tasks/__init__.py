"""Synthetic sequence tasks and their training loops.

* memory benchmarks: the adding problem (`rnnkit.tasks.adding`) and the copy task
  (`rnnkit.tasks.copying`), trained by `rnnkit.tasks.memory`;
* transduction for encoder-decoders: reverse or sort a digit string (`rnnkit.tasks.transduction`),
  trained by `rnnkit.tasks.train_transduction`;
* the masked per-step loss for padded batches (`rnnkit.tasks.losses`).
"""
