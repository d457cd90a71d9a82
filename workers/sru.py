"""The Statistical Recurrent Unit (Oliva, Póczos, Schneider, ICML 2017) as a sequence classifier.

Equations (README, "The model")::

    r_t      = relu(W_r · mu_{t-1} + b_r)           # mu_{t-1}: every alpha's average, concatenated
    phi_t    = relu(W_phi · [x_t ; r_t] + b_phi)
    mu_t^(a) = a · mu_{t-1}^(a) + (1 - a) · phi_t    # for every a in A at once
    o_t      = relu(W_o · mu_t + b_o)                # only o_T is used: logits = head(dropout(o_T))

The hidden state is only ``mu``, kept as (B, len(A), phi) and flattened alpha-major to
(B, len(A)·phi) wherever a layer reads it. ``r_size = 0`` is the paper's "iid" ablation:
phi depends on x alone, so it is computed for all steps in one matmul and only the cheap
moving-average recurrence stays in the loop.

Speed: never index ``x[:, t]`` inside the autograd loop (each step's backward would build a
full-size zero tensor of ``x``: 35.8 s against 1.25 s per batch at B=128, T=784, README);
project the inputs of all steps at once and iterate over ``unbind(1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["SRUClassifier", "SRUScan", "Workspace", "PAPER_ALPHAS"]

#: The set A used by the seed slides (0.999 only pays on long sequences such as pixel MNIST).
PAPER_ALPHAS: tuple[float, ...] = (0.0, 0.5, 0.9, 0.99, 0.999)

# Learnable alphas are sigmoid(logit); initial values are clamped into this range so that
# a requested 0 or 1 gets a finite logit (and the alpha stays strictly inside (0, 1)).
_LEARN_MIN, _LEARN_MAX = 1e-3, 1.0 - 1e-4


class SRUClassifier(nn.Module):
    """SRU over (B, T, input_size) inputs returning (B, n_classes) logits from o_T."""

    def __init__(
        self,
        input_size: int,
        n_classes: int,
        phi_size: int,
        r_size: int,
        out_size: int,
        alphas: Sequence[float],
        learn_alphas: bool = False,
        dropout: float = 0.0,
        fused: bool = True,
    ) -> None:
        super().__init__()
        alphas = [float(a) for a in alphas]
        if input_size < 1 or n_classes < 2 or phi_size < 1 or out_size < 1 or r_size < 0:
            raise ValueError("sizes must be positive (r_size may be 0)")
        if not alphas or not all(0.0 <= a < 1.0 for a in alphas):
            raise ValueError(f"alphas must be a non-empty set of values in [0, 1), got {alphas}")
        self.input_size, self.n_classes = input_size, n_classes
        self.phi_size, self.r_size, self.out_size = phi_size, r_size, out_size
        self.n_alphas = len(alphas)
        self.learn_alphas = learn_alphas
        self.fused = fused  # hand-written BPTT (SRUScan); False = plain autograd loop
        self.workspace = Workspace()  # SRUScan's buffers: this model's, freed with it
        state = self.n_alphas * phi_size

        self.r_layer = nn.Linear(state, r_size) if r_size > 0 else None  # W_r, b_r
        self.phi_layer = nn.Linear(input_size + r_size, phi_size)  # W_phi over [x ; r], b_phi
        self.out_layer = nn.Linear(state, out_size)  # W_o, b_o
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(out_size, n_classes)

        a = torch.tensor(alphas, dtype=torch.float32).unsqueeze(1)  # (A, 1)
        if learn_alphas:
            a = a.clamp(_LEARN_MIN, _LEARN_MAX)
            self.alpha_logit = nn.Parameter(torch.log(a) - torch.log1p(-a))
        else:
            self.register_buffer("fixed_alphas", a)

    @property
    def alphas(self) -> Tensor:
        """The moving-average rates, shape (A, 1); in (0, 1) when learnable."""
        if self.learn_alphas:
            return torch.sigmoid(self.alpha_logit)
        return self.get_buffer("fixed_alphas")

    def extra_repr(self) -> str:
        vals = ", ".join(f"{v:.4g}" for v in self.alphas.detach().flatten().tolist())
        return f"alphas=[{vals}], learn_alphas={self.learn_alphas}"

    def forward(self, x: Tensor) -> Tensor:
        assert x.dim() == 3 and x.shape[2] == self.input_size, f"expected (B, T, {self.input_size})"
        B = x.shape[0]
        alphas = self.alphas.to(x.dtype)  # (A, 1), broadcasts against (B, 1, phi)
        w_x, b_phi = self.phi_layer.weight[:, : self.input_size], self.phi_layer.bias  # (phi, in)
        if self.r_layer is not None and self.fused and torch.is_grad_enabled():
            w_pr = self.phi_layer.weight[:, self.input_size :]  # (phi, r)
            x_tb = x.transpose(0, 1).contiguous()  # (T, B, in): small, in is 1 for pixels
            mu = SRUScan.apply(x_tb, w_x, b_phi, self.r_layer.weight, self.r_layer.bias, w_pr,
                               alphas, self.workspace)
        else:
            # Inputs of every step projected at once (bias folded in): (B, T, phi)
            x_proj = torch.nn.functional.linear(x, w_x, b_phi)
            if self.r_layer is None:  # iid variant: phi_t does not depend on the past
                mu = x.new_zeros(B, self.n_alphas, self.phi_size)  # (B, A, phi)
                for phi in torch.relu(x_proj).unbind(1):  # (B, phi) each
                    mu = torch.lerp(phi.unsqueeze(1), mu, alphas)  # a·mu + (1-a)·phi
            else:
                w_pr = self.phi_layer.weight[:, self.input_size :]  # (phi, r)
                mu = _scan_autograd(x_proj, self.r_layer.weight, self.r_layer.bias, w_pr, alphas)

        o = torch.relu(self.out_layer(mu.reshape(B, -1)))  # (B, out)
        return self.head(self.dropout(o))  # (B, n_classes)

    @staticmethod
    def flops_per_step(input_size: int, phi: int, r: int, n_alphas: int) -> int:
        """Multiply-adds per sample per step (for comparing with an LSTM)."""
        return n_alphas * phi * r + (input_size + r) * phi + 2 * n_alphas * phi



def _scan_autograd(x_proj: Tensor, w_r: Tensor, b_r: Tensor, w_pr: Tensor, alphas: Tensor) -> Tensor:
    """The recurrence written with autograd ops; returns mu_T (B, A, phi). Reference path."""
    B, _, P = x_proj.shape
    mu = x_proj.new_zeros(B, alphas.shape[0], P)  # (B, A, phi)
    w_r_t, w_pr_t = w_r.t(), w_pr.t()
    for xp in x_proj.unbind(1):  # (B, phi)
        r = torch.relu(torch.addmm(b_r, mu.reshape(B, -1), w_r_t))  # (B, r)
        phi = torch.relu(torch.addmm(xp, r, w_pr_t))  # (B, phi)
        mu = torch.lerp(phi.unsqueeze(1), mu, alphas)  # (B, A, phi)
    return mu


class SRUScan(torch.autograd.Function):
    """The SRU recurrence with a hand-written backward pass (BPTT).

    Forward runs without autograd in preallocated buffers laid out (T, B, ·): the input
    projection of all steps is one matmul written straight into the phi buffer, and each step
    adds to it in place (``addmm_``), so no step copies its operands. Backward walks the steps in
    reverse with two small matmuls each and computes the weight gradients of all steps at the
    end as large matmuls; no large tensor is allocated per call, and no (B, T, phi) gradient is
    handed back to autograd (the gradients of W_x and b_phi are computed here).
    benchmarks/cell_speed.py prints its speed next to the plain autograd loop; checked against
    autograd by gradcheck in tests/workers/test_sru.py.

    Inputs: x (T, B, in); w_x (phi, in) and w_pr (phi, r), the x- and r-columns of W_phi;
    b_phi (phi,); w_r (r, A·phi); b_r (r,); alphas (A, 1); the model's Workspace.
    Output: mu_T (B, A, phi).
    """

    @staticmethod
    def forward(ctx, x, w_x, b_phi, w_r, b_r, w_pr, alphas, workspace):  # type: ignore[override]
        T, B, _ = x.shape
        A, R, P = alphas.shape[0], w_r.shape[0], w_x.shape[0]
        ws = workspace.take(T, B, A, P, R, x.dtype, x.device)
        mus, rs, phis = ws.mus, ws.rs, ws.phis  # (T+1, B, A, phi), (T, B, r), (T, B, phi)
        mus[0].zero_()
        torch.addmm(b_phi, x.reshape(T * B, -1), w_x.t(), out=phis.view(T * B, P))  # W_x·x + b
        rs.copy_(b_r.expand(T, B, R))
        w_r_t, w_pr_t = w_r.t(), w_pr.t()
        for t in range(T):
            rs[t].addmm_(mus[t].view(B, A * P), w_r_t).relu_()  # r_t
            phis[t].addmm_(rs[t], w_pr_t).relu_()  # phi_t
            torch.lerp(phis[t].unsqueeze(1), mus[t], alphas, out=mus[t + 1])  # mu_t, every a
        ctx.save_for_backward(x, w_x, w_r, w_pr, alphas)
        ctx.ws, ctx.generation = ws, ws.generation
        return mus[T].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_mu):  # type: ignore[override]
        x, w_x, w_r, w_pr, alphas = ctx.saved_tensors
        ws: Workspace = ctx.ws
        if ws.generation != ctx.generation:
            raise RuntimeError(
                "SRUScan: a second backward through this graph after another forward reused its "
                "buffers; build the model with fused=False to backward twice (retain_graph)"
            )
        mus, rs, phis = ws.mus, ws.rs, ws.phis
        T, B, A, P, R = ws.key
        g_mu = grad_mu.contiguous().clone()  # (B, A, phi): dL/dmu_{t+1}, walking t backwards
        spare = torch.empty_like(g_mu)  # the two swap, so the loop allocates nothing large
        one_minus_a = (1.0 - alphas).view(A)
        a = alphas.view(1, A, 1)
        g_phi, g_r = ws.g_phi, ws.g_r  # dL/d(pre-activation) of phi and r per step
        need_alpha = ctx.needs_input_grad[6]
        g_alpha = grad_mu.new_zeros(A) if need_alpha else None
        # relu's own backward kernel (what autograd runs): 7x faster than compare + masked_fill
        relu_backward = torch.ops.aten.threshold_backward.grad_input
        for t in range(T - 1, -1, -1):
            if g_alpha is not None:  # d mu_{t+1} / d a = mu_t - phi_t
                g_alpha += (g_mu * (mus[t] - phis[t].unsqueeze(1))).sum((0, 2))
            # dL/dphi_t = sum_a (1 - a) dL/dmu_{t+1}^(a), through relu
            relu_backward(torch.matmul(one_minus_a, g_mu), phis[t], 0, grad_input=g_phi[t])
            relu_backward(torch.mm(g_phi[t], w_pr), rs[t], 0, grad_input=g_r[t])
            # dL/dmu_t = a * dL/dmu_{t+1} + W_r^T dL/dr_t
            torch.mm(g_r[t], w_r, out=spare.view(B, A * P))
            spare.addcmul_(g_mu, a)
            g_mu, spare = spare, g_mu
        # Weight gradients of all steps at once: large matmuls instead of several per step.
        gp_all, gr_all = g_phi.view(T * B, P), g_r.view(T * B, R)
        grad_w_r = gr_all.t() @ mus[:T].reshape(T * B, A * P)  # (r, A·phi)
        grad_w_pr = gp_all.t() @ rs.view(T * B, R)  # (phi, r)
        grad_w_x = gp_all.t() @ x.reshape(T * B, -1)  # (phi, in)
        grad_x = (gp_all @ w_x).view(T, B, -1) if ctx.needs_input_grad[0] else None
        grad_b_phi, grad_b_r = gp_all.sum(0), gr_all.sum(0)
        ws.release()  # a second backward (retain_graph) still works until the next forward
        grad_alpha = g_alpha.view(A, 1) if g_alpha is not None else None
        return grad_x, grad_w_x, grad_b_phi, grad_w_r, grad_b_r, grad_w_pr, grad_alpha, None


class Workspace:
    """Forward/backward buffers of SRUScan, owned by one model and freed with it.

    A (T, B, A, phi) block is hundreds of MB at pixel-MNIST size; allocating it fresh on every
    step costs more in page faults than the recurrence itself, so a model keeps one workspace
    between steps. Each array is one flat buffer sized for the largest batch seen; a smaller
    batch (the last one of an epoch) takes a contiguous prefix of it as its (T, B, ...) view.
    A new shape (T, A, phi, r, dtype, device) replaces the old buffers instead of adding to a
    pool, so a long-running worker holds at most one set per live model.
    """

    def __init__(self) -> None:
        self.shape: tuple = ()
        self.batch = 0  # the batch size the buffers can hold
        self.generation = 0  # bumped by every forward; a stale backward refuses to run
        self.busy = False  # a forward is waiting for its backward
        self._flat: dict[str, Tensor] = {}

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._flat.values())

    def take(self, T: int, B: int, A: int, P: int, R: int, dtype: torch.dtype,
             device: torch.device) -> Workspace:
        """Views for one forward of batch ``B``; a second forward before the first one's
        backward gets a private workspace instead of overwriting the first."""
        if self.busy:
            return Workspace().take(T, B, A, P, R, dtype, device)
        shape = (T, A, P, R, dtype, device)
        if shape != self.shape or B > self.batch:
            self._flat = {}  # free the old buffers before allocating the new ones
            per_b = {"mus": (T + 1) * A * P, "rs": T * R, "phis": T * P, "g_phi": T * P,
                     "g_r": T * R}
            self._flat = {k: torch.empty(n * B, dtype=dtype, device=device)
                          for k, n in per_b.items()}
            self.shape, self.batch = shape, B
        self.key = (T, B, A, P, R)
        self.mus = self._flat["mus"][: (T + 1) * B * A * P].view(T + 1, B, A, P)
        self.rs = self._flat["rs"][: T * B * R].view(T, B, R)
        self.phis = self._flat["phis"][: T * B * P].view(T, B, P)
        self.g_phi = self._flat["g_phi"][: T * B * P].view(T, B, P)  # backward's
        self.g_r = self._flat["g_r"][: T * B * R].view(T, B, R)
        self.generation += 1
        self.busy = True
        return self

    def release(self) -> None:
        self.busy = False
