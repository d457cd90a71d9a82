"""GRU and LSTM sequence classifiers: the baselines the SRU is compared with.

Same contract as the SRU: (B, T, input_size) -> (B, n_classes) logits from the last step.
The forget-gate bias (LSTM) / update-gate bias (GRU) starts at ``forget_bias``, as in the seed,
so that early training remembers rather than forgets.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["GRUClassifier", "LSTMClassifier"]


class _RNNClassifier(nn.Module):
    rnn: nn.GRU | nn.LSTM
    gate_index = 0  # which of the stacked gate blocks in bias_ih/bias_hh is the "keep" gate

    def __init__(
        self,
        input_size: int,
        n_classes: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        forget_bias: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if input_size < 1 or n_classes < 2 or hidden_size < 1 or num_layers < 1:
            raise ValueError("sizes must be positive")
        self.input_size, self.n_classes = input_size, n_classes
        self.hidden_size, self.num_layers, self.forget_bias = hidden_size, num_layers, forget_bias
        self.rnn = self._make_rnn(input_size, hidden_size, num_layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_classes)
        H, g = hidden_size, self.gate_index
        for layer in range(num_layers):
            b_ih = getattr(self.rnn, f"bias_ih_l{layer}")
            b_hh = getattr(self.rnn, f"bias_hh_l{layer}")
            b_ih.data[g * H : (g + 1) * H].fill_(forget_bias)
            b_hh.data[g * H : (g + 1) * H].zero_()  # the two biases add up: total = forget_bias

    def _make_rnn(self, input_size: int, hidden_size: int, num_layers: int) -> nn.GRU | nn.LSTM:
        raise NotImplementedError

    def gate_bias(self, layer: int = 0) -> Tensor:
        """Total (ih + hh) bias of the keep gate of ``layer``, shape (hidden,)."""
        H, g = self.hidden_size, self.gate_index
        b = getattr(self.rnn, f"bias_ih_l{layer}") + getattr(self.rnn, f"bias_hh_l{layer}")
        return b[g * H : (g + 1) * H]

    def forward(self, x: Tensor) -> Tensor:
        assert x.dim() == 3 and x.shape[2] == self.input_size, f"expected (B, T, {self.input_size})"
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(self.dropout(out[:, -1]))  # (B, n_classes)


class LSTMClassifier(_RNNClassifier):
    gate_index = 1  # PyTorch orders LSTM gates i, f, g, o

    def _make_rnn(self, input_size: int, hidden_size: int, num_layers: int) -> nn.LSTM:
        return nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)


class GRUClassifier(_RNNClassifier):
    # PyTorch orders GRU gates r, z, n and computes h' = (1 - z)·n + z·h: z is the keep gate.
    gate_index = 1

    def _make_rnn(self, input_size: int, hidden_size: int, num_layers: int) -> nn.GRU:
        return nn.GRU(input_size, hidden_size, num_layers, batch_first=True)
