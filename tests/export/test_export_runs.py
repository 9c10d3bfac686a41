"""``rnnkit export RUN_DIR``: char-LM and task run folders, int8, and the torch-free sampler."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from export_helpers import assert_close, run_onnx, session
from safetensors.torch import save_file
from torch_blocked import run_without_torch

import rnnkit
from rnnkit.cli import main
from rnnkit.data import Vocab
from rnnkit.export import ort_sample
from rnnkit.export.runs import load_run
from rnnkit.tasks.memory import MemoryTaskConfig, build_memory_model
from rnnkit.tasks.runlog import write_run_folder
from rnnkit.tasks.train_transduction import TransductionConfig, build_seq2seq
from rnnkit.train import TrainConfig, generate
from rnnkit.train.checkpoint import save_weights, write_config, write_vocab

TEXT = "The quick brown fox jumps over the lazy dog.\nPack my box with five dozen jugs!\n"


@pytest.fixture(scope="module")
def charlm_run(tmp_path_factory):
    """A char-LM run folder as `rnnkit train` writes it (untrained weights, sharpened)."""
    run = tmp_path_factory.mktemp("charlm-run")
    torch.manual_seed(0)
    vocab = Vocab.from_text(TEXT)
    model = rnnkit.CharLM(len(vocab), cell="lstm", hidden_size=12, num_layers=2, embed_size=6)
    with torch.no_grad():
        model.head.weight.mul_(8.0)  # peaked distributions: top-k / top-p cut something
    write_config(run, TrainConfig(hidden_size=12, num_layers=2, embed_size=6), model.shape())
    write_vocab(run, vocab)
    save_weights(run, model.state_dict(), step=1)
    assert main(["export", str(run), "--int8"]) == 0
    assert main(["export", str(run), "--streaming"]) == 0
    return run, model.eval(), vocab


def test_charlm_run_exports_with_vocabulary(charlm_run):
    run, model, vocab = charlm_run
    proto = onnx.load(run / "model.onnx")
    meta = {p.key: p.value for p in proto.metadata_props}
    assert Vocab.from_json(meta["rnnkit.vocab"]) == vocab
    x = torch.randint(0, len(vocab), (9, 4))
    with torch.no_grad():
        logits, state = model(x)
    assert_close(run_onnx(session(run / "model.onnx"), {"x": x}), (logits, *state), "char LM")


def test_int8_is_smaller_and_close(charlm_run):
    """onnxruntime's dynamic quantization: DynamicQuantizeLSTM and integer MatMul, int8 weights."""
    run, model, vocab = charlm_run
    ops = {n.op_type for n in onnx.load(run / "model-int8.onnx").graph.node}
    assert "DynamicQuantizeLSTM" in ops and "MatMulInteger" in ops, sorted(ops)
    assert (run / "model-int8.onnx").stat().st_size < (run / "model.onnx").stat().st_size
    x = {"x": torch.randint(0, len(vocab), (20, 3))}
    fp32 = run_onnx(session(run / "model.onnx"), x)[0]
    int8 = run_onnx(session(run / "model-int8.onnx"), x)[0]
    rel = np.abs(int8 - fp32).max() / np.abs(fp32).max()
    assert 0 < rel < 0.05, f"int8 logits differ from float32 by {rel:.3g} (relative)"


SETTINGS = [  # (temperature, top_k, top_p)
    (1.0, None, None), (0.7, 5, None), (1.3, None, 0.8), (0.9, 8, 0.95), (0.0, None, None),
]


@pytest.mark.parametrize("streaming", [False, True])
def test_ort_sampler_prints_what_the_torch_sampler_prints(charlm_run, streaming):
    run, model, vocab = charlm_run
    onnx_model = ort_sample.OnnxCharLM(run / ("model-step.onnx" if streaming else "model.onnx"))
    assert onnx_model.streaming == streaming
    texts = []
    for seed, (temperature, top_k, top_p) in enumerate(SETTINGS):
        kw = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed + 2**33}
        want = "".join(generate(model, vocab, "The ", 120, **kw))
        got = "".join(ort_sample.generate(onnx_model, "The ", 120, **kw))
        assert got == want, f"{kw}: {got!r} != {want!r}"
        texts.append(want)
    assert len(set(texts[0])) > 10 and len(set(texts)) == len(texts)  # real draws, all different


def test_torch_random_stream_in_numpy():
    for seed in (0, 7, 2**32 + 3, 123456789):
        g = torch.Generator().manual_seed(seed)
        want = torch.rand(50, generator=g, dtype=torch.float64).numpy()
        np.testing.assert_array_equal(ort_sample.TorchCPURandom(seed).uniform(50), want)


SAMPLER = (
    """
    import sys

    from rnnkit.export.ort_sample import main

    code = main(sys.argv[1:])
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
    sys.exit(code)
    """
)


def test_sampler_runs_without_torch(charlm_run, capsys):
    run, _, _ = charlm_run
    args = ["--prompt", "The ", "--length", "80", "--temperature", "0.8", "--top-k", "6",
            "--seed", "5"]
    assert main(["sample", str(run), *args]) == 0
    want = capsys.readouterr().out
    result = run_without_torch(SAMPLER, str(run / "model.onnx"), *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == want
    bad = run_without_torch(SAMPLER, str(run / "model.onnx"), "--top-p", "2")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == "ort_sample: error: --top-p must lie in (0, 1], got 2.0"


def test_cli_sample_runtime_onnx_prints_the_torch_text(charlm_run, tmp_path, capsys):
    """`rnnkit sample RUN --runtime onnx` (the run folder or the .onnx file) prints what the
    torch runtime prints; a run with no exported file is one line naming the export command."""
    run, _, _ = charlm_run
    args = ["--prompt", "The ", "--length", "60", "--temperature", "0.9", "--top-p", "0.9",
            "--seed", "11"]
    assert main(["sample", str(run), *args]) == 0
    want = capsys.readouterr().out
    for target in (run, run / "model.onnx"):
        assert main(["sample", str(target), "--runtime", "onnx", *args]) == 0
        assert capsys.readouterr().out == want
    assert main(["sample", str(tmp_path), "--runtime", "onnx"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "export" in err and "does not exist" in err


def test_task_runs(tmp_path):
    """Memory-task (Tagger / SequenceClassifier) and transduction (Seq2Seq) run folders load as
    the models that wrote them; one exports through the CLI as a torch.export program."""
    torch.manual_seed(0)
    copy = MemoryTaskConfig(task="copy", hidden_size=6, steps=0)
    adding = MemoryTaskConfig(task="adding", cell="gru", hidden_size=6, steps=0)
    reverse = TransductionConfig(hidden_size=6, embed_size=4, steps=0)
    src, lengths = torch.randint(0, 13, (5, 7)), torch.tensor([7, 3, 1, 5, 2])
    tgt_in = torch.randint(0, 13, (5, 4))
    runs = {
        "copy": (copy, build_memory_model(copy), "memory_task", (torch.randn(5, 7, 10), lengths)),
        "adding": (adding, build_memory_model(adding), "memory_task",
                   (torch.randn(5, 7, 2), lengths)),
        "reverse": (reverse, build_seq2seq(reverse), "transduction", (src, lengths, tgt_in)),
    }
    for name, (config, model, kind, args) in runs.items():
        out = write_run_folder(tmp_path / name, config, [], {"kind": kind})
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(out / "model.safetensors"))
        loaded, meta = load_run(out)
        assert type(loaded) is type(model) and not loaded.training
        assert meta["rnnkit.task"] == f"{kind}:{config.task}"
        with torch.no_grad():
            torch.testing.assert_close(loaded(*args), model.eval()(*args), rtol=0, atol=0)
    assert main(["export", str(tmp_path / "adding"), "--format", "pt2"]) == 0
    program = torch.export.load(tmp_path / "adding" / "model.pt2").module()
    x = torch.randn(3, 11, 2)
    for lens in (torch.tensor([11, 4, 1]), torch.tensor([11, 11, 11])):
        with torch.no_grad():
            assert_close(program(x, lens), (runs["adding"][1](x, lens),), "adding run pt2")


def test_charlm_streaming_file(charlm_run):
    """``--streaming``: ids (B,) -> logits (B, V) and the state, as the model on one step."""
    run, model, vocab = charlm_run
    sess = session(run / "model-step.onnx")
    state, ort_state = None, None
    for t in range(5):
        x_t = torch.randint(0, len(vocab), (4,))
        with torch.no_grad():
            logits, state = model(x_t[None], state)
        feeds = {"x_t": x_t} | ({} if ort_state is None else dict(zip(("h0", "c0"), ort_state)))
        logits_t, *ort_state = run_onnx(sess, feeds)
        ort_state = [torch.from_numpy(s) for s in ort_state]
        assert_close([logits_t, *ort_state], (logits[0], *state), f"char LM step {t}")


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"rnnkit export: error: {tmp_path} has no config.json; expected a run folder " \
                  "from `rnnkit train` or `rnnkit task ... --out-dir`"
    assert main(["export", str(tmp_path), "--format", "pt2", "--int8"]) == 2
    assert "--int8 quantizes an ONNX file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
