"""‖∂L/∂h_t‖ per step equals autograd through the real layer run one step at a time."""

import matplotlib.image
import pytest
import torch
from torch import nn

from rnnkit.cli import main
from rnnkit.models.build import make_rnn
from rnnkit.viz.gradflow import StepwiseRNN, hidden_gradient_norms, plot_gradient_norms

B, T, I, H = 3, 6, 2, 4


class Head(nn.Module):
    """A task-like model: recurrent layer, then a loss on a few steps' outputs."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        out, _ = self.rnn(x)
        return out


def loss_of(out):  # weights differ per step so every t gets its own gradient
    w = torch.linspace(0.2, 1.0, out.size(1), dtype=out.dtype)[None, :, None]
    return (w * out.sin()).sum() + out[:, -1].pow(2).sum()


def _stepped_oracle(rnn, x, cell, num_layers, bidirectional):
    """Oracle: for every layer and direction, a one-layer copy of the real layer (same weights) is
    called on one step at a time; the state it returns is what the next step and the layer above
    read, so autograd's gradient with respect to it is the total dL/dh_t. Returns the output
    (B, T, D*H) and the states {(layer, direction): [h_t (1, B, H) for t in 0..T-1]}."""
    sd = rnn.state_dict()
    dirs = (0, 1) if bidirectional else (0,)
    layer_in = [x[:, t] for t in range(x.size(1))]
    states = {}
    for layer in range(num_layers):
        for d in dirs:
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            one = make_rnn(cell, layer_in[0].size(-1), H, batch_first=True).double()
            one.load_state_dict({k: sd[k.replace("_l0", sfx)] for k in one.state_dict()})
            state, hs = None, [None] * len(layer_in)
            for t in range(len(layer_in)) if d == 0 else reversed(range(len(layer_in))):
                _, state = one(layer_in[t][:, None], state)
                hs[t] = state[0] if cell == "lstm" else state
            states[(layer, d)] = hs
        layer_in = [torch.cat([states[(layer, d)][t][0] for d in dirs], dim=1) for t in range(len(layer_in))]
    return torch.stack(layer_in, dim=1), states


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_norms_equal_autograd_step_by_step(cell, bidirectional):
    torch.manual_seed(0)
    L, D = 2, 2 if bidirectional else 1
    rnn = make_rnn(cell, I, H, num_layers=L, bidirectional=bidirectional, batch_first=True).double()
    x = torch.randn(B, T, I, dtype=torch.double)
    norms = hidden_gradient_norms(Head(rnn), lambda m: loss_of(m(x)))  # (L, D, T)
    assert norms.shape == (L, D, T)

    out, states = _stepped_oracle(rnn, x, cell, L, bidirectional)
    torch.testing.assert_close(out, rnn(x)[0])  # the oracle computes the same function
    keys = sorted(states)
    grads = torch.autograd.grad(loss_of(out), [h for k in keys for h in states[k]])
    expected = torch.stack([g.norm() for g in grads]).reshape(L, D, T)
    torch.testing.assert_close(norms, expected, rtol=1e-10, atol=1e-12)
    assert (expected > 0).all()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_stepwise_equals_the_layer_with_lengths(cell, bidirectional):
    torch.manual_seed(2)
    rnn = make_rnn(cell, I, H, num_layers=2, bidirectional=bidirectional, batch_first=True).double()
    x = torch.randn(4, T, I, dtype=torch.double)
    lengths = torch.tensor([6, 2, 1, 4])
    for kw in ({}, {"lengths": lengths}):
        (o1, h1), (o2, h2) = StepwiseRNN(rnn)(x, **kw), rnn(x, **kw)
        torch.testing.assert_close(o1, o2)
        torch.testing.assert_close(h1, h2)


@pytest.mark.parametrize("layer", [
    lambda: nn.LSTM(I, H, num_layers=2, proj_size=3, bidirectional=True),
    lambda: nn.GRU(I, H, num_layers=3, dropout=0.5, batch_first=True),
    lambda: make_rnn("lstm", I, H, num_layers=2, dropout=0.5),
    lambda: nn.RNN(I, H, nonlinearity="relu", bias=False),
], ids=["torch-lstm-proj", "torch-gru-dropout", "rnnkit-lstm-dropout", "torch-relu-nobias"])
def test_stepwise_equals_the_layer_in_eval_mode(layer):
    """Projections, no biases, and dropout between layers that eval mode switches off, as in the layer."""
    torch.manual_seed(3)
    rnn = layer().double().eval()
    x = torch.randn(5, 4, I, dtype=torch.double)
    unrolled = StepwiseRNN(rnn)  # a new module: in training mode itself, it must follow rnn's mode
    (o1, h1), (o2, h2) = unrolled(x), rnn(x)
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close(h1, h2)
    D = 2 if rnn.bidirectional else 1
    assert len(unrolled.states) == rnn.num_layers and all(len(s) == D for s in unrolled.states)
    steps = x.size(1) if rnn.batch_first else x.size(0)
    assert all(len(d) == steps for s in unrolled.states for d in s)


def test_vanishing_gradient_in_a_contracting_rnn():
    # a tanh RNN with small recurrent weights: ‖∂L/∂h_t‖ shrinks geometrically away from the loss
    torch.manual_seed(0)
    rnn = make_rnn("rnn", I, H, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(0.3)
    x = torch.randn(B, 20, I)
    norms = hidden_gradient_norms(Head(rnn), lambda m: m(x)[:, -1].sum())[0, 0]
    assert (norms[1:] > norms[:-1]).all()
    assert norms[0] < 1e-3 * norms[-1]


def test_plot_has_the_expected_axes(tmp_path):
    fig = plot_gradient_norms({"a": torch.tensor([1e-3, 1e-2, 1.0]), "b": torch.tensor([1.0, 1.0, 1.0])})
    (ax,) = fig.axes
    assert ax.get_xlabel() == "time step t" and "∂L/∂h" in ax.get_ylabel()
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 2
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([1e-3, 1e-2, 1.0])
    fig.savefig(tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 5_000


def test_cli_gradflow_writes_an_image(tmp_path, capsys):
    out = tmp_path / "gf.png"
    assert main(["gradflow", "--length", "8", "--train-steps", "3", "--hidden-size", "8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rnn before" in text and "gru after" in text and str(out) in text
    img = matplotlib.image.imread(out)
    assert img.shape[1] > 3 * img.shape[0] / 2  # three panels side by side
    assert main(["gradflow", "--cells", "rnn,tcn", "--out", str(out)]) == 2
    assert "got 'rnn,tcn'" in capsys.readouterr().err
