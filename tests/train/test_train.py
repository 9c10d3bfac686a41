"""``rnnkit train`` through main(): the run folder, exact resumption, the engines, the schedule."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from lm_helpers import TINY
from safetensors.torch import load_file

from rnnkit.cli import main
from rnnkit.data.vocab import Vocab
from rnnkit.models.charlm import CharLM
from rnnkit.train.config import PRESETS, TrainConfig, make_config
from rnnkit.train.distributed import DistInfo
from rnnkit.train.engines import NumpyEngine, TorchEngine
from rnnkit.train.schedule import learning_rate


def train_argv(corpus, out, *extra):
    return ["train", "--data", str(corpus), "--out", str(out), *TINY, *extra]


def test_train_writes_a_complete_run_folder(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(corpus, out, "--max-iters", "6", "--eval-every", "3",
                           "--sample-length", "40")) == 0
    captured = capsys.readouterr()
    assert "validation loss" in captured.out and "--- sample" in captured.out
    assert f"rnnkit sample {out}" in captured.out and f"rnnkit eval {out}" in captured.out
    assert "step 6/6" in captured.err  # plain log lines: stderr is not a terminal here

    doc = json.loads((out / "config.json").read_text())
    assert doc["format"] == "rnnkit-charlm-run" and doc["config"]["hidden_size"] == 16
    vocab = Vocab.from_json((out / "vocab.json").read_text())
    assert doc["model"]["vocab_size"] == len(vocab)
    weights = load_file(out / "model.safetensors")
    assert weights["head.weight"].shape == (len(vocab), 16)
    state = torch.load(out / "state.pt", weights_only=True)  # no pickled code needed
    assert state["step"] == 6 and state["streams"] == {"epoch": 0, "window": 6}
    assert [s.shape for s in state["carried"]] == [(1, 4, 16), (1, 4, 16)]  # LSTM (h, c), B = 4
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["step"] for r in rows if r["val_loss"]] == ["3", "6"]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_default_data_is_the_builtin_corpus(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--max-iters", "2", "--hidden-size", "16",
                 "--sample-length", "30"]) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["data"] == "python-docs"
    assert "data python-docs" in capsys.readouterr().err


def resume_argv(corpus, out, *extra):
    # two layers with dropout: the resumed run must also restore the dropout RNG; seq-len 32 with
    # 8 streams makes epochs of 21 windows, so 30 steps cross an epoch boundary (state reset,
    # new offset); --max-time 0: a step-based schedule, which is what makes the resume bit-exact
    return ["train", "--data", str(corpus), "--out", str(out), "--max-time", "0", "--hidden-size", "16",
            "--embed-size", "8", "--num-layers", "2", "--dropout", "0.1", "--seq-len", "32",
            "--batch-size", "8", "--warmup-iters", "4", "--decay-iters", "30", "--eval-every",
            "7", "--log-every", "5", "--sample-length", "0", "--device", "cpu", *extra]


def test_resume_is_bit_exact(corpus, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(resume_argv(corpus, straight, "--max-iters", "30")) == 0
    assert main(resume_argv(corpus, split, "--max-iters", "13")) == 0
    assert main(["train", "--out", str(split), "--resume", "--max-iters", "30"]) == 0

    a, b = load_file(straight / "model.safetensors"), load_file(split / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit for bit
    sa = torch.load(straight / "state.pt", weights_only=True)
    sb = torch.load(split / "state.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 30 and sa["streams"] == sb["streams"]
    assert sa["streams"]["epoch"] == 1
    for x, y in zip(sa["carried"], sb["carried"]):
        assert torch.equal(x, y)
    for pa, pb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        assert torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])
    steps = [int(r["step"]) for r in csv.DictReader(open(split / "metrics.csv")) if r["train_loss"]]
    assert steps == [5, 10, 15, 20, 25, 30]  # the table continues, no duplicate rows


def test_resume_refuses_other_shape_or_vocabulary(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(corpus, out, "--max-iters", "2")) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--hidden-size", "32"]) == 2
    assert "hidden-size 16, the flags ask for 32" in capsys.readouterr().err
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text() + "§", encoding="utf-8")
    assert main(["train", "--out", str(out), "--resume", "--data", str(other)]) == 2
    assert "vocabulary differs" in capsys.readouterr().err
    before = torch.load(out / "state.pt", weights_only=True)["step"]
    assert before == 2  # refused before any training step


def test_existing_run_needs_resume_and_resume_needs_out(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(corpus, out, "--max-iters", "1")) == 0
    capsys.readouterr()
    assert main(train_argv(corpus, out, "--max-iters", "1")) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert main(["train", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def test_resume_with_more_steps_continues(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(corpus, out, "--max-iters", "3")) == 0
    assert main(["train", "--out", str(out), "--resume", "--max-iters", "5"]) == 0
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 5
    assert json.loads((out / "config.json").read_text())["config"]["max_iters"] == 5


def test_numpy_engine_takes_the_same_steps_as_torch():
    """Three AdamW steps with clipping: NumPy's hand-written BPTT vs autograd, same weights."""
    vocab = Vocab.from_text("abcdefgh")
    cfg = TrainConfig(hidden_size=6, embed_size=0, lr=0.05, grad_clip=0.5, weight_decay=0.1)
    np_engine = NumpyEngine(vocab, cfg)
    model = CharLM(len(vocab), hidden_size=6, embed_size=0)
    model.load_state_dict(np_engine.weights())
    torch_engine = TorchEngine(model, cfg, torch.device("cpu"), DistInfo())
    rng = np.random.default_rng(0)
    for step in range(3):
        x, y = rng.integers(0, 8, size=(2, 5, 3))
        la, na = np_engine.train_step(x, y, reset=step == 0)
        lb, nb = torch_engine.train_step(x, y, reset=step == 0)
        assert la == pytest.approx(lb, rel=1e-5) and na == pytest.approx(nb, rel=1e-4)
        np_engine.apply(0.05)
        torch_engine.apply(0.05)
    for key, value in np_engine.weights().items():
        torch.testing.assert_close(value, model.state_dict()[key], rtol=1e-4, atol=1e-5)


def test_numpy_engine_split_over_threads_takes_the_same_steps():
    """--numpy-threads 2 splits each batch in two and takes the steps of the whole batch."""
    vocab = Vocab.from_text("abcdefgh")
    one = NumpyEngine(vocab, TrainConfig(hidden_size=6, embed_size=0, engine="numpy"))
    two = NumpyEngine(vocab, TrainConfig(hidden_size=6, embed_size=0, engine="numpy", numpy_threads=2))
    slices, whole = [], two.model.loss_and_grads
    two.model.loss_and_grads = lambda x, y, state: slices.append(x.shape[1]) or whole(x, y, state)
    rng = np.random.default_rng(1)
    for step in range(3):
        x, y = rng.integers(0, 8, size=(2, 5, 256))  # (T, B): 256 streams, two slices of 128
        la, na = one.train_step(x, y, reset=step == 0)
        lb, nb = two.train_step(x, y, reset=step == 0)
        assert la == pytest.approx(lb, rel=1e-5) and na == pytest.approx(nb, rel=1e-5)
        one.apply(0.05)
        two.apply(0.05)
    assert slices == [128, 128] * 3
    for key, value in one.weights().items():
        torch.testing.assert_close(two.weights()[key], value, rtol=1e-5, atol=1e-6)


def test_numpy_threads_flag_is_checked(corpus, tmp_path, capsys):
    base = ["train", "--data", str(corpus), "--out", str(tmp_path / "x")]
    assert main(base + ["--numpy-threads", "2"]) == 2
    assert "--numpy-threads applies to --engine numpy only, got 2 with --engine torch" in capsys.readouterr().err
    assert main(base + ["--engine", "numpy", "--numpy-threads", "0"]) == 2
    assert "--numpy-threads must be greater than zero, got 0" in capsys.readouterr().err
    small = ["--engine", "numpy", "--numpy-threads", "2", "--hidden-size", "8", "--seq-len", "8",
             "--batch-size", "4", "--max-iters", "1", "--sample-length", "0"]
    assert main(base + small) == 0
    assert "--numpy-threads 2 does nothing here" in capsys.readouterr().err


def test_numpy_engine_from_the_command_line(corpus, tmp_path, capsys):
    out = tmp_path / "np"
    argv = ["train", "--data", str(corpus), "--out", str(out), "--engine", "numpy",
            "--hidden-size", "8", "--seq-len", "8", "--batch-size", "4", "--max-iters", "4",
            "--eval-every", "2", "--sample-length", "20"]
    assert main(argv) == 0
    assert "numpy on cpu" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["model"]["embed_size"] == 0
    assert main(["train", "--out", str(out), "--resume", "--max-iters", "6"]) == 0
    assert main(["sample", str(out), "--length", "10", "--seed", "0"]) == 0
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "x"), "--engine", "numpy",
                 "--dropout", "0.2"]) == 2
    assert "--engine numpy needs --dropout 0" in capsys.readouterr().err


def test_schedule_warmup_then_cosine_to_the_floor():
    kw = dict(lr=1.0, warmup_iters=10, decay_iters=110, min_lr_ratio=0.1)
    assert learning_rate(0, **kw) == pytest.approx(0.1)
    assert learning_rate(9, **kw) == pytest.approx(1.0)
    assert learning_rate(10, **kw) == pytest.approx(1.0)
    assert learning_rate(60, **kw) == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2
    assert learning_rate(110, **kw) == pytest.approx(0.1)
    assert learning_rate(500, **kw) == pytest.approx(0.1)
    # with a time budget the clock can be ahead of the steps: half the time gone = halfway
    assert learning_rate(10, **kw, elapsed=50.0, max_time=100.0) == pytest.approx(0.55)


def test_preset_then_flags_override():
    cfg = make_config({"hidden_size": 64, "data": "x.txt"}, "shakespeare")
    assert cfg.hidden_size == 64 and cfg.data == "x.txt"
    assert cfg.seq_len == PRESETS["shakespeare"]["seq_len"]
    assert cfg.max_time == PRESETS["shakespeare"]["max_time"]


def test_tensorboard_when_installed(corpus, tmp_path, monkeypatch):
    """With torch.utils.tensorboard importable, scalars go to a SummaryWriter in the run folder."""
    import sys
    import types

    logged = []

    class FakeWriter:
        def __init__(self, log_dir):
            logged.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            logged.append((tag, step))

        def flush(self):
            pass

        def close(self):
            logged.append(("closed", None))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard",
                        types.SimpleNamespace(SummaryWriter=FakeWriter))
    out = tmp_path / "run"
    assert main(train_argv(corpus, out, "--max-iters", "2")) == 0
    assert logged[0] == ("dir", str(out / "tensorboard"))
    assert ("train_loss", 2) in logged and ("val_loss", 2) in logged and logged[-1][0] == "closed"


def test_progress_bar_on_a_terminal():
    import io

    from rnnkit.train.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = Progress(10, every=5, stream=stream)
    for step in range(1, 11):
        bar.update(step, loss=1.5, chars_per_s=1234.0, lr=1e-3, eta=3.0)
    bar.close()
    text = stream.getvalue()
    assert "10/10" in text and "1,234 chars/s" in text and "\r" in text  # a redrawn bar
    assert "step 5/10 |" not in text  # not the plain log lines
