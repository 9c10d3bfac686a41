"""Run folders from the user's side: runs/latest, ``rnnkit runs``, resuming, the hints printed."""

from __future__ import annotations

import os
import sys

import pytest
from lm_helpers import TINY

from rnnkit.cli import main
from rnnkit.train import RunExistsError, TrainConfig, train


def train_in(corpus, out, *extra):
    return main(["train", "--data", str(corpus), "--out", str(out), *TINY, "--max-iters", "2",
                 *extra])


def test_latest_follows_the_newest_run_and_samples(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train_in(corpus, "runs/first") == 0
    assert os.readlink("runs/latest") == "first"  # relative: the runs folder can move
    assert train_in(corpus, "runs/second") == 0
    assert os.readlink("runs/latest") == "second"
    assert "run folder: runs/second (also runs/latest)" in capsys.readouterr().out
    assert main(["sample", "runs/latest", "--length", "5", "--seed", "0"]) == 0
    assert main(["eval", "runs/latest"]) == 0
    assert main(["train", "--out", "runs/first", "--resume", "--max-iters", "3"]) == 0
    assert os.readlink("runs/latest") == "first"  # the run worked on last
    assert not list((tmp_path / "runs").glob(".latest*"))  # no temporary link left


def test_latest_only_in_a_folder_named_runs(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_in(corpus, "elsewhere/run") == 0
    assert not os.path.lexists("elsewhere/latest")
    os.makedirs("runs/latest")  # someone's own folder of that name is left alone
    assert train_in(corpus, "runs/a") == 0
    assert os.path.isdir("runs/latest") and not os.path.islink("runs/latest")


def test_sample_latest_before_any_run_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "runs/latest"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run folder: runs/latest" in err
    assert "rnnkit train" in err
    os.makedirs("runs")
    os.symlink("gone", "runs/latest")  # the run it pointed at was deleted
    assert main(["eval", "runs/latest"]) == 2
    assert "runs/latest points at gone, which is gone" in capsys.readouterr().err


def test_runs_lists_step_validation_and_latest(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train_in(corpus, "runs/a") == 0
    assert train_in(corpus, "runs/b", "--cell", "gru") == 0
    (tmp_path / "runs" / "not-a-run").mkdir()
    capsys.readouterr()
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("runs/a ") and "lstm 1x16" in lines[0] and "step 2" in lines[0]
    assert "validation " in lines[0] and "latest" not in lines[0]
    assert lines[1].startswith("runs/b ") and "gru 1x16" in lines[1]
    assert lines[1].endswith("<- runs/latest")


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: None, "no such folder: {p}"),
    (lambda p: p.write_text("x"), "{p} is a file, not a folder of runs"),
])
def test_runs_bad_folder(tmp_path, capsys, make, message):
    path = tmp_path / "nope"
    make(path)
    assert main(["runs", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(p=path) in err


def test_runs_in_an_empty_folder(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs in" in capsys.readouterr().out


def test_resume_says_where_it_resumes_from(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_in(corpus, out) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--max-iters", "4"]) == 0
    err = capsys.readouterr().err
    assert f"resuming {out} from its checkpoint at step 2 (epoch 0); training to step 4" in err


def test_resume_of_a_missing_folder_says_it_is_missing(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "nope"), "--resume"]) == 2
    assert f"--resume: no such run folder: {tmp_path / 'nope'}" in capsys.readouterr().err


def test_library_and_cli_word_an_existing_run_in_their_own_terms(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_in(corpus, out) == 0
    cfg = TrainConfig(data=str(corpus), out=str(out), hidden_size=16, embed_size=8, seq_len=8,
                      batch_size=4, max_iters=1, max_time=0)
    with pytest.raises(RunExistsError, match="set resume=True to continue it") as info:
        train(cfg)
    assert "--resume" not in str(info.value)
    assert train_in(corpus, out) == 2
    assert "already holds a run; pass --resume to continue it" in capsys.readouterr().err


def test_next_commands_are_printed_as_the_user_called_rnnkit(corpus, tmp_path, monkeypatch,
                                                             capsys):
    """Called as .venv/bin/rnnkit (the venv not active), the hints say .venv/bin/rnnkit too."""
    monkeypatch.setattr(sys, "argv", [".venv/bin/rnnkit", "train"])
    monkeypatch.setenv("PATH", str(tmp_path))  # no rnnkit on PATH
    assert train_in(corpus, tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert f".venv/bin/rnnkit sample {tmp_path / 'run'}" in out
    assert f".venv/bin/rnnkit train --out {tmp_path / 'run'} --resume" in out


def test_train_longer_hint_follows_what_stopped_the_run(corpus, tmp_path, capsys):
    assert train_in(corpus, tmp_path / "steps") == 0
    assert "--resume --max-iters 4   (train longer)" in capsys.readouterr().out
    # a budget of 1e-9 s ends the run by the clock before its first step
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "clock"), *TINY,
                 "--max-time", "1e-9"]) == 0
    out = capsys.readouterr().out
    assert "(max-time reached)" in out and "--resume --max-time 2e-09   (train longer)" in out
