"""GRU/LSTM keep-gate bias and build_model's validation."""

import pytest
import torch

from workers.baselines import GRUClassifier, LSTMClassifier
from workers.models import build_model, model_args
from workers.sru import SRUClassifier


def build(params):
    return build_model(model_args(params, input_size=1, n_classes=10))


@pytest.mark.parametrize("cls", [GRUClassifier, LSTMClassifier])
def test_forget_bias_initialisation(cls):
    m = cls(1, 10, hidden_size=6, num_layers=2, forget_bias=2.5)
    for layer in range(2):
        torch.testing.assert_close(m.gate_bias(layer), torch.full((6,), 2.5))
    # the other gates keep PyTorch's random init (not all equal to 2.5)
    b = m.rnn.bias_ih_l0
    assert not torch.allclose(b[:6], torch.full((6,), 2.5))
    assert m(torch.rand(3, 7, 1)).shape == (3, 10)


def test_lstm_forget_gate_is_second_block():
    m = LSTMClassifier(1, 2, hidden_size=4, forget_bias=3.0)
    torch.testing.assert_close(m.rnn.bias_ih_l0[4:8], torch.full((4,), 3.0))
    torch.testing.assert_close(m.rnn.bias_hh_l0[4:8], torch.zeros(4))


def test_build_model_each_kind():
    assert isinstance(build({"model": "sru", "phi_size": 8, "r_size": 0}), SRUClassifier)
    assert isinstance(build({"model": "gru", "hidden_size": 8}), GRUClassifier)
    assert isinstance(build({"model": "lstm"}), LSTMClassifier)


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"model": "rnn"}, "model"),
        ({"model": "sru", "phi_size": 0}, "phi_size"),
        ({"model": "sru", "phi_size": 2.5}, "phi_size"),
        ({"model": "sru", "r_size": -1}, "r_size"),
        ({"model": "sru", "alphas": [0.5, 1.0]}, "alphas"),
        ({"model": "sru", "alphas": []}, "alphas"),
        ({"model": "sru", "alphas": [0.5, 0.5]}, "alphas"),
        ({"model": "sru", "dropout": 1.0}, "dropout"),
        ({"model": "lstm", "hidden_size": "big"}, "hidden_size"),
        ({"model": "gru", "num_layers": 0}, "num_layers"),
        ({"model": "sru", "phi_size": 1 << 20}, "phi_size"),
        ({"model": "sru", "hidden_size": 8}, "hidden_size"),
        ({"model": "sru", "lr": float("nan")}, "lr"),
    ],
)
def test_build_model_rejects_bad_params_naming_the_key(params, key):
    with pytest.raises(ValueError, match=rf"^{key}:"):
        build(params)
