"""Every bad flag or path of diagram, gradflow, heatmap, curves and task is refused in one line,
before any training or drawing starts; write failures at the end are one line too."""

import errno
import json
import os
import subprocess
import sys

import pytest

import rnnkit.data.atomic
from rnnkit.cli import main


@pytest.fixture
def no_work(monkeypatch):
    """Training and drawing replaced by a recorder: a refused command must never reach them."""
    calls = []

    def record(name):
        def fake(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} ran before the arguments were checked")
        return fake

    import rnnkit.tasks.memory
    import rnnkit.tasks.train_transduction
    import rnnkit.viz.diagram
    import rnnkit.viz.memory_gradflow

    monkeypatch.setattr(rnnkit.tasks.memory, "train_memory_task", record("train_memory_task"))
    monkeypatch.setattr(rnnkit.tasks.train_transduction, "train_transduction", record("train_transduction"))
    monkeypatch.setattr(rnnkit.viz.memory_gradflow, "memory_gradient_flow", record("memory_gradient_flow"))
    monkeypatch.setattr(rnnkit.viz.diagram, "draw_diagram", record("draw_diagram"))
    return calls


@pytest.fixture
def places(tmp_path, adding_run, charlm_run):
    """Names the bad inputs below refer to."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("not a folder\n")
    (tmp_path / "notes.txt").write_text("step,loss\n0,1\n")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "emptycsv").mkdir()
    (tmp_path / "emptycsv" / "metrics.csv").write_text("")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "config.json").write_text("{not json")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text(json.dumps({"kind": "something else"}))
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    return {"TMP": str(tmp_path), "ADD": str(adding_run), "LM": str(charlm_run)}


BAD = [
    # diagram
    (["diagram", "--out", "d.txt"], ".png or .svg, got 'd.txt'"),
    (["diagram", "--out", "{TMP}/dir.png"], "must name an image file"),
    (["diagram", "--out", "{TMP}/file.txt/d.png"], "is not a folder"),
    (["diagram", "--steps", "0"], "steps must be greater than zero, got 0"),
    (["diagram", "--steps", "40"], "at most 32 steps"),
    (["diagram", "--num-layers", "0"], "num_layers must be greater than zero, got 0"),
    (["diagram", "--hidden-size", "-1"], "--hidden-size must be greater than zero, got -1"),
    (["diagram", "--input-size", "0"], "--input-size must be greater than zero, got 0"),
    (["diagram", "--run", "{TMP}/nowhere"], "the run folder {TMP}/nowhere does not exist"),
    (["diagram", "--run", "{TMP}/dangling"], "which does not exist"),
    (["diagram", "--run", "{TMP}/empty"], "is not a run folder (it has no config.json)"),
    (["diagram", "--run", "{TMP}/file.txt"], "is a file; expected a run folder"),
    (["diagram", "--run", "{TMP}/badjson"], "is not valid JSON"),
    (["diagram", "--run", "{ADD}", "--cell", "gru"], "--cell does nothing with --run"),
    # gradflow
    (["gradflow", "--out", "g.jpg"], ".png or .svg, got 'g.jpg'"),
    (["gradflow", "--length", "0"], "--length must be greater than zero, got 0"),
    (["gradflow", "--length", "1"], "length must be at least 2, got 1"),
    (["gradflow", "--train-steps", "-1"], "--train-steps must be at least 0, got -1"),
    (["gradflow", "--lr", "0"], "--lr must be greater than zero, got 0.0"),
    (["gradflow", "--lr", "-0.1"], "--lr must be greater than zero, got -0.1"),
    (["gradflow", "--hidden-size", "0"], "--hidden-size must be greater than zero, got 0"),
    (["gradflow", "--seed", "-1"], "--seed must be at least 0, got -1"),
    (["gradflow", "--threads", "0"], "--threads must be greater than zero, got 0"),
    (["gradflow", "--threads", "-2"], "--threads must be greater than zero, got -2"),
    (["gradflow", "--cells", "rnn,tcn"], "got 'rnn,tcn'"),
    (["gradflow", "--cells", "gru,gru"], "distinct cells"),
    (["gradflow", "--text", "hello"], "--text is the input of a char-LM run: it needs --run"),
    (["gradflow", "--run", "{TMP}/nowhere"], "does not exist"),
    (["gradflow", "--run", "{TMP}/foreign"], "got a run of kind 'something else'"),
    (["gradflow", "--run", "{ADD}", "--length", "5"], "--length does nothing with --run"),
    (["gradflow", "--run", "{ADD}", "--cells", "rnn"], "--cells does nothing with --run"),
    (["gradflow", "--run", "{ADD}", "--text", "hi"], "is a memory-task run"),
    (["gradflow", "--run", "{LM}", "--text", "xyz"], "at least 2 characters from the model's vocabulary"),
    # heatmap
    (["heatmap", "--layer", "1"], "--layer must lie in [-1, 1)"),
    (["heatmap", "--layer", "-2"], "--layer must lie in [-1, 1)"),
    (["heatmap", "--cell", "gru", "--cell-state"], "this model is GRU"),
    (["heatmap", "--units", "3,x"], "'all' or comma-separated unit indices"),
    (["heatmap", "--units", "-1"], "distinct indices >= 0"),
    (["heatmap", "--units", "2,2"], "distinct indices >= 0"),
    (["heatmap", "--units", "32"], "below H=32, got 32"),
    (["heatmap", "--top", "0"], "--top must be greater than zero, got 0"),
    (["heatmap", "--top", "3", "--units", "1"], "--units or --top, not both"),
    (["heatmap", "--length", "-4"], "--length must be greater than zero, got -4"),
    (["heatmap", "--run", "{ADD}", "--cell", "gru"], "--cell does nothing with --run"),
    (["heatmap", "--run", "{ADD}", "--units", "8"], "below H=8, got 8"),
    (["heatmap", "--run", "{LM}", "--layer", "2"], "--layer must lie in [-2, 2)"),
    (["heatmap", "--run", "{LM}", "--cell-state"], "this model is GRU"),
    (["heatmap", "--run", "{LM}", "--seed", "3"], "a char-LM run reads --text"),
    (["heatmap", "--run", "{TMP}/empty"], "it has no config.json"),
    # curves
    (["curves", "{TMP}/nowhere"], "the run folder {TMP}/nowhere does not exist"),
    (["curves", "{TMP}/empty"], "is not a run folder (it has no metrics.csv)"),
    (["curves", "{TMP}/notes.txt"], "a run folder or a metrics .csv file"),
    (["curves", "{TMP}/missing.csv"], "does not exist"),
    (["curves", "{TMP}/emptycsv"], "has no rows"),
    (["curves", "{ADD}", "--out", "c.pdf"], ".png or .svg, got 'c.pdf'"),
    # task
    (["task", "adding", "--lr", "-1"], "lr must be greater than zero, got -1.0"),
    (["task", "adding", "--lr", "0"], "lr must be greater than zero, got 0.0"),
    (["task", "adding", "--steps", "-1"], "steps must be at least 0, got -1"),
    (["task", "adding", "--length", "0"], "length must be greater than zero, got 0"),
    (["task", "adding", "--length", "1"], "length must be at least 2, got 1"),
    (["task", "adding", "--hidden-size", "0"], "hidden_size must be greater than zero, got 0"),
    (["task", "adding", "--num-layers", "0"], "num_layers must be greater than zero, got 0"),
    (["task", "adding", "--batch-size", "0"], "batch_size must be greater than zero, got 0"),
    (["task", "adding", "--eval-every", "0"], "eval_every must be greater than zero, got 0"),
    (["task", "adding", "--eval-size", "-3"], "eval_size must be greater than zero, got -3"),
    (["task", "adding", "--clip", "0"], "clip must be greater than zero, got 0.0"),
    (["task", "adding", "--solve-ratio", "0"], "solve_ratio must lie in (0, 1], got 0.0"),
    (["task", "adding", "--solve-ratio", "1.5"], "solve_ratio must lie in (0, 1], got 1.5"),
    (["task", "adding", "--seed", "-1"], "seed must be at least 0, got -1"),
    (["task", "adding", "--device", "gpu"], "device must be cpu, cuda, cuda:N or mps, got 'gpu'"),
    (["task", "adding", "--threads", "0"], "--threads must be greater than zero, got 0"),
    (["task", "adding", "--cell", "tcn"], "cell must be one of rnn, lstm, gru; got 'tcn'"),
    (["task", "copy", "--num-symbols", "0"], "num_symbols must be greater than zero, got 0"),
    (["task", "adding", "--out-dir", "{TMP}/file.txt"], "is a file; expected a folder"),
    (["task", "adding", "--out-dir", "{ADD}"], "already holds a run"),
    (["task", "reverse", "--show", "abc", "--steps", "5"], "digits 0-9, got 'abc'"),
    (["task", "reverse", "--show", "12", ""], "digits 0-9, got ''"),
    (["task", "reverse", "--show", "1²"], "digits 0-9, got '1²'"),
    (["task", "reverse", "--min-len", "0"], "min_len must be greater than zero, got 0"),
    (["task", "sort", "--min-len", "5", "--max-len", "2"], "max_len must be at least 5, got 2"),
    (["task", "reverse", "--target", "0"], "target must lie in (0, 1]"),
    (["task", "reverse", "--target", "1.5"], "target must lie in (0, 1]"),
    (["task", "reverse", "--embed-size", "0"], "embed_size must be greater than zero, got 0"),
    (["task", "sort", "--threads", "-1"], "--threads must be greater than zero, got -1"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_before_any_work(argv, message, places, no_work, capsys, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # relative --out files land here, if they were ever written
    capsys.readouterr()
    argv = [a.format(**places) for a in argv]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"rnnkit {argv[0]}: error: ")
    assert message.format(**places) in lines[0]
    assert no_work == []
    if argv[0] in ("diagram", "curves", "task"):
        assert out == ""  # nothing was printed (a diagram's Mermaid, a task's header) before the check
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("argv", [["task", "adding", "--steps", "x"], ["gradflow", "--lr", "fast"],
                                  ["heatmap", "--layer", "top"], ["diagram", "--steps", "2.5"],
                                  ["gradflow", "--task", "sum"], ["heatmap", "--sort", "random"]])
def test_wrong_types_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("rnnkit ") and "error: argument" in err


def test_bad_flags_are_refused_without_importing_torch():
    """The checks need no torch, so a typo is answered at once, not after torch's import time."""
    code = ("import sys; from rnnkit.cli import main; "
            "rc = main(['task', 'reverse', '--show', 'abc']); "
            "rc2 = main(['heatmap', '--units', 'x']); "
            "print(rc, rc2, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "2", "False"], done.stderr


@pytest.fixture
def full_disk(monkeypatch):
    """Every atomic write fails as on a full disk (after creating its temporary file, as it would)."""
    real = rnnkit.data.atomic.atomic_write

    def fail(path, write):
        real(path.parent / ".probe", lambda f: None)  # the folder itself is fine
        os.unlink(path.parent / ".probe")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rnnkit.data.atomic, "atomic_write", fail)


def test_a_full_disk_is_one_line(full_disk, adding_run, tmp_path, capsys):
    out = tmp_path / "new" / "d.png"
    assert main(["diagram", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rnnkit diagram: error: cannot write {out}: No space left on device"]
    assert main(["curves", str(adding_run), "--out", str(tmp_path / "c.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0]
    assert not (tmp_path / "c.png").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_first(tmp_path, adding_run, no_work, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for argv in (["diagram", "--out", str(ro / "d.png")], ["curves", str(adding_run), "--out", str(ro / "c.png")],
                     ["gradflow", "--out", str(ro / "sub" / "g.png")],
                     ["task", "adding", "--out-dir", str(ro / "run")]):
            assert main(argv) == 2
            out, err = capsys.readouterr()
            assert err.count("\n") == 1 and "does not take new files" in err and out == ""
    finally:
        ro.chmod(0o755)
    assert no_work == []


def test_images_are_written_atomically_into_new_folders(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "d.svg"
    assert main(["diagram", "--steps", "2", "--out", str(out)]) == 0
    assert "<svg" in out.read_text()
    assert [p.name for p in out.parent.iterdir()] == ["d.svg"]  # no temporary file left behind


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_flag_has_help_with_its_default():
    from rnnkit.cli import build_parser

    commands = dict(_subparsers(build_parser()))
    parsers = {name: commands[name] for name in ("diagram", "gradflow", "heatmap", "curves")}
    parsers.update({f"task {n}": p for n, p in _subparsers(commands["task"])})
    assert len(parsers) == 8
    for name, parser in parsers.items():
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and "default" in action.help, (name, action.option_strings)
