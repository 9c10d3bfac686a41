"""Final-state pooling picks each sequence's last real step (and step 0 for the reverse direction)."""

import pytest
import torch

from rnnkit.models.build import make_rnn
from rnnkit.models.classifier import SequenceClassifier, final_states
from rnnkit.models.tagger import run_rnn

LENGTHS = [4, 1, 6, 3]


def test_indices_on_a_known_output():
    # output[b, t, j] = 100 b + 10 t + j: the picked values name the (b, t) they came from
    B, T, H = 4, 6, 2
    out = (100 * torch.arange(B)[:, None, None] + 10 * torch.arange(T)[None, :, None]
           + torch.arange(2 * H)[None, None, :]).float()
    picked = final_states(out, torch.tensor(LENGTHS), bidirectional=True)
    for b, n in enumerate(LENGTHS):
        assert picked[b, :H].tolist() == [100 * b + 10 * (n - 1) + j for j in range(H)]  # fwd: t = len-1
        assert picked[b, H:].tolist() == [100 * b + j for j in range(H, 2 * H)]  # bwd: t = 0
    assert final_states(out[..., :H], None).tolist() == out[:, -1, :H].tolist()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_equals_h_n_of_each_unpadded_sequence(cell, bidirectional):
    torch.manual_seed(0)
    rnn = make_rnn(cell, 3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True).double()
    x = torch.randn(len(LENGTHS), max(LENGTHS), 3, dtype=torch.double)
    out, _ = run_rnn(rnn, x, lengths=torch.tensor(LENGTHS))
    pooled = final_states(out, torch.tensor(LENGTHS), bidirectional)
    D = 2 if bidirectional else 1
    for b, n in enumerate(LENGTHS):
        _, h_n = rnn(x[b : b + 1, :n])
        h_n = h_n[0] if cell == "lstm" else h_n  # (L*D, 1, H)
        top = h_n[-D:, 0].reshape(-1)  # top layer, [fwd, bwd]
        torch.testing.assert_close(pooled[b], top, rtol=1e-10, atol=1e-12)


def test_classifier_reads_the_final_state():
    torch.manual_seed(0)
    model = SequenceClassifier(3, 4, 5, cell="gru", bidirectional=True).double()
    x = torch.randn(len(LENGTHS), max(LENGTHS), 3, dtype=torch.double)
    logits = model(x, torch.tensor(LENGTHS))
    assert logits.shape == (4, 5)
    for b, n in enumerate(LENGTHS):
        torch.testing.assert_close(logits[b], model(x[b : b + 1, :n])[0], rtol=1e-10, atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="every length must be between 1 and the sequence length 6; got min 0, max 3"):
        final_states(torch.zeros(2, 6, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="cell must be one of rnn, lstm, gru; got 'tcn'"):
        make_rnn("tcn", 3, 4)
    with pytest.raises(ValueError, match=r"expected input of shape \(B, T, I\)"):
        SequenceClassifier(3, 4, 2)(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="every length must be between 1 and the sequence length 3; got min 1, max 4"):
        run_rnn(make_rnn("rnn", 2, 2, batch_first=True), torch.zeros(2, 3, 2), lengths=torch.tensor([4, 1]))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_run_rnn_packs_for_torch_nn_and_agrees_with_rnnkit(cell):
    torch.manual_seed(0)
    ours = make_rnn(cell, 3, 4, bidirectional=True, batch_first=True).double()
    ref = getattr(torch.nn, cell.upper())(3, 4, batch_first=True, bidirectional=True).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(len(LENGTHS), max(LENGTHS), 3, dtype=torch.double)
    lengths = torch.tensor(LENGTHS)
    (o1, h1), (o2, h2) = run_rnn(ours, x, lengths=lengths), run_rnn(ref, x, lengths=lengths)
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close(h1, h2)
