"""The SRU against a plain per-alpha reference loop, gradcheck, iid variant, learnable alphas."""

import pytest
import torch

from workers.sru import SRUClassifier, SRUScan, Workspace


def reference_forward(m: SRUClassifier, x: torch.Tensor) -> torch.Tensor:
    """The SRU equations (workers/sru.py, README "The model"), one alpha at a time, x[:, t]
    indexing, no tricks."""
    B, T, _ = x.shape
    alphas = [float(a) for a in m.alphas.flatten()]
    mus = [torch.zeros(B, m.phi_size, dtype=x.dtype) for _ in alphas]
    for t in range(T):
        prev = torch.cat(mus, dim=1)  # (B, A*phi), alpha-major
        if m.r_size > 0:
            r = torch.relu(prev @ m.r_layer.weight.t() + m.r_layer.bias)
            inp = torch.cat([x[:, t], r], dim=1)
        else:
            inp = x[:, t]
        phi = torch.relu(inp @ m.phi_layer.weight.t() + m.phi_layer.bias)
        mus = [a * mu + (1 - a) * phi for a, mu in zip(alphas, mus, strict=True)]
    o = torch.relu(torch.cat(mus, 1) @ m.out_layer.weight.t() + m.out_layer.bias)
    return o @ m.head.weight.t() + m.head.bias


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("r_size", [0, 5])
def test_matches_reference_loop(fused, r_size):
    torch.manual_seed(0)
    m = SRUClassifier(3, 4, phi_size=7, r_size=r_size, out_size=6,
                      alphas=[0.0, 0.5, 0.9, 0.99], fused=fused).double()
    x = torch.rand(5, 11, 3, dtype=torch.float64)
    out = m(x)
    assert out.shape == (5, 4)
    torch.testing.assert_close(out, reference_forward(m, x), atol=1e-6, rtol=0)


def test_fused_gradients_equal_autograd_gradients():
    torch.manual_seed(1)
    kw = dict(phi_size=6, r_size=4, out_size=5, alphas=[0.0, 0.3, 0.95])
    a, b = SRUClassifier(2, 3, **kw, fused=True), SRUClassifier(2, 3, **kw, fused=False)
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 9, 2)
    a(x).square().sum().backward()
    b(x).square().sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("learn", [False, True])
def test_gradcheck_scan(learn):
    torch.manual_seed(2)
    B, T, A, P, R, In = 3, 6, 3, 4, 2, 2
    x = torch.randn(T, B, In, dtype=torch.float64, requires_grad=True)
    w_x = torch.randn(P, In, dtype=torch.float64, requires_grad=True)
    b_phi = torch.randn(P, dtype=torch.float64, requires_grad=True)
    w_r = torch.randn(R, A * P, dtype=torch.float64, requires_grad=True)
    b_r = torch.randn(R, dtype=torch.float64, requires_grad=True)
    w_pr = torch.randn(P, R, dtype=torch.float64, requires_grad=True)
    alphas = torch.tensor([[0.0], [0.4], [0.9]], dtype=torch.float64, requires_grad=learn)
    assert torch.autograd.gradcheck(
        SRUScan.apply, (x, w_x, b_phi, w_r, b_r, w_pr, alphas, Workspace()))


def test_gradcheck_whole_model_learnable_alphas():
    torch.manual_seed(3)
    m = SRUClassifier(2, 3, phi_size=4, r_size=3, out_size=4, alphas=[0.1, 0.6],
                      learn_alphas=True).double()
    x = torch.rand(2, 5, 2, dtype=torch.float64)
    params = tuple(m.parameters())

    def f(*ps):
        return torch.func.functional_call(m, dict(zip(dict(m.named_parameters()), ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(f, params)


def test_iid_variant_has_no_recurrent_weights():
    m = SRUClassifier(1, 10, phi_size=8, r_size=0, out_size=8, alphas=[0.0, 0.9])
    assert m.r_layer is None
    assert m.phi_layer.weight.shape == (8, 1)  # phi sees x only
    assert m(torch.rand(2, 5, 1)).shape == (2, 10)


def test_learnable_alphas_stay_inside_unit_interval_and_learn():
    torch.manual_seed(0)
    m = SRUClassifier(1, 2, phi_size=4, r_size=2, out_size=4, alphas=[0.0, 0.5, 0.999],
                      learn_alphas=True)
    a0 = m.alphas.detach().clone()
    assert torch.all(a0 > 0) and torch.all(a0 < 1)
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(torch.rand(8, 6, 1)), torch.randint(0, 2, (8,))).backward()
        assert m.alpha_logit.grad is not None and m.alpha_logit.grad.abs().sum() > 0
        opt.step()
    a1 = m.alphas.detach()
    assert not torch.equal(a0, a1)
    assert torch.all(a1 > 0) and torch.all(a1 < 1)


def test_fixed_alpha_zero_works_and_is_not_a_parameter():
    m = SRUClassifier(1, 2, phi_size=3, r_size=2, out_size=3, alphas=[0.0])
    assert "fixed_alphas" in dict(m.named_buffers())
    assert all("alpha" not in n for n, _ in m.named_parameters())
    assert torch.isfinite(m(torch.rand(2, 4, 1))).all()


@pytest.mark.parametrize("alphas", [[], [1.0], [-0.1], [0.5, 1.2]])
def test_rejects_bad_alphas(alphas):
    with pytest.raises(ValueError, match="alphas"):
        SRUClassifier(1, 2, phi_size=3, r_size=2, out_size=3, alphas=alphas)


def test_workspace_is_reused_and_not_shared_between_live_graphs():
    torch.manual_seed(0)
    m = SRUClassifier(1, 2, phi_size=3, r_size=2, out_size=3, alphas=[0.0, 0.5])
    x1, x2 = torch.rand(2, 4, 1), torch.rand(2, 4, 1)
    ref = SRUClassifier(1, 2, phi_size=3, r_size=2, out_size=3, alphas=[0.0, 0.5], fused=False)
    ref.load_state_dict(m.state_dict())
    # two forwards alive at once (gradient accumulation): each must keep its own buffers
    loss = m(x1).sum() + m(x2).sum()
    loss.backward()
    (ref(x1).sum() + ref(x2).sum()).backward()
    for pa, pb in zip(m.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad)
