"""Run folders the picture tests read: a tiny memory-task run and a tiny char-LM run, made once."""

import pytest
import torch

from rnnkit.cli import main


@pytest.fixture(scope="session")
def adding_run(tmp_path_factory):
    """A memory-task run folder written by ``rnnkit task adding --out-dir`` (8 units, 20 steps)."""
    run = tmp_path_factory.mktemp("runs") / "adding"
    assert main(["task", "adding", "--length", "10", "--steps", "20", "--eval-every", "10",
                 "--hidden-size", "8", "--quiet", "--out-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="session")
def charlm_run(tmp_path_factory):
    """A char-LM run folder (GRU, 2 layers of 40 units: wider than the heat map's 32 rows),
    written with the training package's own functions."""
    from rnnkit.data.vocab import Vocab
    from rnnkit.models.charlm import CharLM
    from rnnkit.train.checkpoint import save_weights, write_config, write_vocab
    from rnnkit.train.config import TrainConfig

    run = tmp_path_factory.mktemp("runs") / "charlm"
    run.mkdir()
    vocab = Vocab.from_text("abc de")
    torch.manual_seed(0)
    model = CharLM(len(vocab), cell="gru", hidden_size=40, num_layers=2, embed_size=4)
    write_config(run, TrainConfig(cell="gru", hidden_size=40, num_layers=2, embed_size=4), model.shape())
    write_vocab(run, vocab)
    save_weights(run, model.state_dict(), step=1)
    return run
