"""Bad input gives one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
import io
import os

import pytest
import torch
from lm_helpers import TINY

from rnnkit.cli import main
from rnnkit.train import engines


def run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def train_argv(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), *TINY, *extra]


def write(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


# -- data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"x" * 500, "only one distinct character ('x')"),
        (b"good text\nthen \xc3\x28 bad", "invalid UTF-8 at byte 15 (line 2, column 6)"),
        (b"abcdefghi", "fewer than seq_len + 1 = 9"),  # training split: 8 characters
    ],
)
def test_bad_corpus(tmp_path, capsys, content, message):
    data = write(tmp_path, "c.txt", content)
    code, err = run(train_argv(data, tmp_path / "run") + ["--batch-size", "1"], capsys)
    assert code == 2 and message in err
    assert err.startswith("rnnkit train: error: ") and err.count("\n") == 1  # one line
    assert not (tmp_path / "run").exists()  # refused before creating the run


def test_corpus_too_short_for_the_batch(tmp_path, capsys):
    data = write(tmp_path, "c.txt", b"abcdefghij" * 3)  # training split 27 < 4 * 8 + 1
    code, err = run(train_argv(data, tmp_path / "run"), capsys)
    assert code == 2 and "too short for --batch-size 4" in err and "at most 3" in err


def test_corpus_exactly_at_the_edge(tmp_path, capsys):
    # 11 characters: training split int(9.9) = 9 = seq_len + 1, validation split 2
    data = write(tmp_path, "c.txt", b"abcabcabcab")
    code, _ = run(train_argv(data, tmp_path / "run", "--batch-size", "1", "--max-iters", "2"),
                  capsys)
    assert code == 0
    code, err = run(train_argv(data, tmp_path / "run2", "--batch-size", "1", "--seq-len", "9"),
                    capsys)
    assert code == 2 and "fewer than seq_len + 1 = 10" in err


def test_empty_validation_split(tmp_path, capsys):
    data = write(tmp_path, "c.txt", b"abcab")  # training split 4, validation split 1
    code, err = run(train_argv(data, tmp_path / "run", "--batch-size", "1", "--seq-len", "3"),
                    capsys)
    assert code == 2 and "validation split (last 10%) with 1 character(s)" in err


def test_missing_file_and_directory(tmp_path, capsys):
    code, err = run(train_argv(tmp_path / "nope.txt", tmp_path / "run"), capsys)
    assert code == 2 and "no such file" in err and "named corpora" in err
    code, err = run(train_argv(tmp_path, tmp_path / "run"), capsys)
    assert code == 2 and "is a directory" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cell", "transformer"], "--cell must be one of lstm, gru, rnn; got 'transformer'"),
        (["--lr", "-1"], "--lr must be greater than zero, got -1.0"),
        (["--dropout", "1.5"], "--dropout must be a probability in [0, 1), got 1.5"),
        (["--preset", "nope"], "--preset must be one of shakespeare; got 'nope'"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_bad_flags(corpus, tmp_path, capsys, flags, message):
    code, err = run(train_argv(corpus, tmp_path / "run") + flags, capsys)
    assert code == 2 and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(corpus, tmp_path, capsys):
    code, err = run(train_argv(corpus, tmp_path / "run") + ["--device", "cuda"], capsys)
    assert code == 2 and "--device cuda: no CUDA GPU is available" in err


# -- the run folder ------------------------------------------------------------------------------


@pytest.fixture
def trained(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(corpus, out, "--max-iters", "2")) == 0
    capsys.readouterr()
    return out


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def foreign_weights(path):
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.zeros(3, 3)}, path)


def foreign_state(path):
    torch.save({"epoch": 3, "model": {}}, path)


def pickled_object(path):
    torch.save({"format": "rnnkit-train-state", "x": io.StringIO("code")}, path)


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("model.safetensors", lambda p: p.write_bytes(b""), "is empty"),
        ("model.safetensors", truncate, "not a readable safetensors file"),
        ("model.safetensors", foreign_weights, "does not hold weights for the model"),
        ("state.pt", lambda p: p.write_bytes(b""), "is empty"),
        ("state.pt", truncate, "not a readable training state"),
        ("state.pt", foreign_state, "not an rnnkit training state"),
        ("state.pt", pickled_object, "not a readable training state"),  # weights_only refuses
        ("config.json", lambda p: p.write_text("{"), "not an rnnkit char-LM run config"),
        ("vocab.json", lambda p: p.write_text('{"chars": "ab"}'), "must be a list"),
    ],
)
def test_damaged_checkpoint_refused_on_resume(trained, capsys, name, damage, message):
    damage(trained / name)
    code, err = run(["train", "--out", str(trained), "--resume", "--max-iters", "4"], capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_damaged_or_missing_run_for_sample_and_eval(trained, tmp_path, capsys, command):
    code, err = run([command, str(tmp_path / "missing")], capsys)
    assert code == 2 and "no such run folder" in err
    code, err = run([command, str(tmp_path)], capsys)  # a folder, but not a run
    assert code == 2 and "no config.json" in err
    truncate(trained / "model.safetensors")
    code, err = run([command, str(trained)], capsys)
    assert code == 2 and "not a readable safetensors file" in err


def test_interrupted_save_pair_is_refused(trained, capsys):
    state = torch.load(trained / "state.pt", weights_only=True)
    state["step"] = 7
    torch.save(state, trained / "state.pt")
    code, err = run(["train", "--out", str(trained), "--resume"], capsys)
    assert code == 2 and "from step 2 but state.pt from step 7" in err


# -- writing -------------------------------------------------------------------------------------


def test_full_disk(corpus, tmp_path, capsys, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    code, err = run(train_argv(corpus, tmp_path / "run"), capsys)
    assert code == 2 and "cannot write" in err and "No space left on device" in err
    assert not list((tmp_path / "run").glob(".*.tmp"))  # the temporary file is removed


def test_read_only_folder(corpus, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() != 0:  # root ignores permission bits: simulate the error instead
        out.chmod(0o500)
    else:
        import tempfile

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    code, err = run(train_argv(corpus, out), capsys)
    assert code == 2 and "cannot write" in err
    out.chmod(0o700)


def test_not_a_folder(corpus, tmp_path, capsys):
    file = write(tmp_path, "file", b"x")
    code, err = run(train_argv(corpus, file / "run"), capsys)
    assert code == 2 and "cannot create" in err


# -- training going wrong ------------------------------------------------------------------------


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path, capsys,
                                                                    monkeypatch):
    calls = {"n": 0}
    real = engines.loss_fn

    def poisoned(logits, y, reduction="mean"):
        loss = real(logits, y, reduction)
        if logits.requires_grad:  # training steps only
            calls["n"] += 1
            if calls["n"] == 5:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(engines, "loss_fn", poisoned)
    out = tmp_path / "run"
    code, err = run(train_argv(corpus, out, "--max-iters", "10", "--eval-every", "2"), capsys)
    assert code == 1
    assert "non-finite at step 5" in err and "last good checkpoint (step 4)" in err
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["step"] == 4
    assert all(torch.isfinite(p).all() for p in state["optimizer"]["state"][0].values())


def test_run_stopped_before_its_first_save(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(corpus, out, "--max-iters", "1")) == 0
    for name in ("model.safetensors", "state.pt"):  # as after a double Ctrl-C in the first steps
        (out / name).unlink()
    code, err = run(["train", "--out", str(out), "--resume"], capsys)
    assert code == 2 and "no checkpoint yet" in err and "without --resume" in err
    code, _ = run(train_argv(corpus, out, "--max-iters", "1"), capsys)  # starts it again
    assert code == 0 and (out / "state.pt").exists()


def test_out_folder_is_checked_before_the_data_is_read(corpus, tmp_path, capsys, monkeypatch):
    """A run folder that cannot be written is refused before any work (here: reading the data)."""
    import tempfile

    from rnnkit.train import loop

    def no_work(*args, **kwargs):
        raise AssertionError("the data was read before the run folder was checked")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(loop, "load_corpus", no_work)
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    code, err = run(train_argv(corpus, tmp_path / "deep" / "run"), capsys)
    assert code == 2 and f"cannot write in {tmp_path}: Read-only file system" in err
    assert err.count("\n") == 1 and not (tmp_path / "deep").exists()


def test_out_under_a_file_is_checked_before_the_data_is_read(corpus, tmp_path, capsys,
                                                              monkeypatch):
    from rnnkit.train import loop

    monkeypatch.setattr(loop, "load_corpus", lambda *a, **k: pytest.fail("data read first"))
    file = write(tmp_path, "file", b"x")
    code, err = run(train_argv(corpus, file / "sub" / "run"), capsys)
    assert code == 2 and f"cannot create {file / 'sub' / 'run'}: {file} is a file" in err
    code, err = run(train_argv(corpus, file), capsys)
    assert code == 2 and "a file of that name is in the way" in err


def test_damaged_state_gives_our_advice_not_torchs(trained, capsys):
    pickled_object(trained / "state.pt")
    code, err = run(["train", "--out", str(trained), "--resume", "--max-iters", "4"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "holds Python objects that rnnkit never writes" in err
    assert "weights_only" not in err and "this run cannot be resumed" in err
    truncate(trained / "state.pt")
    code, err = run(["train", "--out", str(trained), "--resume", "--max-iters", "4"], capsys)
    assert code == 2 and "truncated or damaged" in err and "weights_only" not in err


def test_existing_run_and_resume_shape_are_checked_before_the_data_is_read(trained, corpus,
                                                                            capsys, monkeypatch):
    from rnnkit.train import loop

    monkeypatch.setattr(loop, "load_corpus", lambda *a, **k: pytest.fail("data read first"))
    code, err = run(train_argv(corpus, trained), capsys)
    assert code == 2 and "already holds a run; pass --resume" in err
    code, err = run(["train", "--out", str(trained), "--resume", "--hidden-size", "8"], capsys)
    assert code == 2 and "has hidden-size 16, the flags ask for 8" in err
