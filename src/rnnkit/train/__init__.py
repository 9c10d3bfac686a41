"""Training, checkpoints, evaluation and sampling for the character language model.

    from rnnkit.train import TrainConfig, train, evaluate_run, load_model, generate
    result = train(TrainConfig(data="python-docs", out="runs/demo", max_iters=500))
    model, vocab, cfg = load_model("runs/demo")
    print("".join(generate(model, vocab, "\\n", 200, temperature=0.8, seed=0)))

Files: config (the dataclass behind the CLI flags, presets), loop (the training loop), engines
(PyTorch and NumPy), schedule (warm-up + cosine), device (``--device``, and whether ``--precision``
runs there), checkpoint (the run folder's files), rundir (where runs go, ``runs/latest``, the list
``rnnkit runs`` prints), resume (continuing a run), metrics (CSV, PNG, TensorBoard), progress (tqdm
or log lines), signals (Ctrl-C / SIGTERM), distributed (torchrun), evaluate and sampling (what
``rnnkit eval`` and ``rnnkit sample`` run).
"""

from importlib import import_module

# name -> submodule; loaded on first use so that building the CLI parser (which reads
# rnnkit.train.config) does not import torch
_LAZY = {
    "CheckpointError": "checkpoint", "load_model": "checkpoint",
    "PRESETS": "config", "ConfigError": "config", "TrainConfig": "config", "make_config": "config",
    "EvalResult": "evaluate", "evaluate_run": "evaluate",
    "TrainingError": "loop", "TrainResult": "loop", "train": "loop",
    "check_precision": "device", "resolve_device": "device",
    "RunExistsError": "resume", "list_runs": "rundir",
    "SamplingError": "sampling", "default_prompt": "sampling", "generate": "sampling",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnkit.train' has no attribute {name!r}")
    value = getattr(import_module(f"rnnkit.train.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
