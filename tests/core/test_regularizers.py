"""The pix2pix-zero / ReNoise noise regularisers (inversion_core.regularizers), checked per sample and channel."""
import pytest
import torch
import torch.nn.functional as F

from inversion_core import Monitor
from inversion_core.regularizers import NoiseRegularizer, pair_loss, patch_kl_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def white(shape, seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def smooth(shape, seed=0, width=5):
    """Unit-variance noise blurred over ``width`` pixels (strongly correlated neighbours), circular."""
    x = white(shape, seed)
    flat = x.reshape(-1, 1, *shape[-2:])
    pad = width // 2
    blurred = F.avg_pool2d(F.pad(flat, (pad, pad, pad, pad), mode="circular"), width, stride=1)
    blurred = blurred.reshape(shape)
    return blurred / blurred.flatten(1).std(dim=1).reshape(-1, *([1] * (len(shape) - 1)))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _reference_pair_loss(eps, generator):
    """A plain loop over samples, fields and scales with torch.roll (same shift draws as pair_loss)."""
    fields = eps.reshape(eps.shape[0], -1, *eps.shape[-2:])
    x = fields
    terms = torch.zeros(eps.shape[0], dtype=eps.dtype)
    while True:
        g, h, w = x.shape[1:]
        shift_h = torch.randint(1, max(h // 2, 2), (g,), generator=generator)
        shift_w = torch.randint(1, max(w // 2, 2), (g,), generator=generator)
        for b in range(x.shape[0]):
            for c in range(g):
                field = x[b, c]
                terms[b] += (field * torch.roll(field, int(shift_h[c]), 0)).mean() ** 2
                terms[b] += (field * torch.roll(field, int(shift_w[c]), 1)).mean() ** 2
        if min(h, w) <= 8:
            return terms
        x = F.avg_pool2d(x, 2)


def _reference_kl(eps, ref, p=4):
    """The official unfold construction, one sample and field at a time."""
    out = torch.zeros(eps.shape[0], dtype=eps.dtype)
    e, r = (t.reshape(t.shape[0], -1, *t.shape[-2:]) for t in (eps, ref))
    for b in range(e.shape[0]):
        for c in range(e.shape[1]):
            a = e[b, c].unfold(0, p, p).unfold(1, p, p).reshape(-1, p * p)
            o = r[b, c].unfold(0, p, p).unfold(1, p, p).reshape(-1, p * p)
            m0, v0, m1, v1 = a.mean(1), a.var(1), o.mean(1), o.var(1)
            out[b] += (torch.log((v1 + 1e-6) / (v0 + 1e-6)) + (v0 + (m0 - m1) ** 2) / (v1 + 1e-6) - 1).abs().sum()
    return out


@pytest.mark.parametrize("shape", [(2, 4, 32, 32), (2, 3, 24, 40), (1, 16, 16, 16), (2, 4, 2, 16, 16)])
def test_losses_match_plain_loops(shape):
    eps, ref = white(shape, 0, torch.float64), white(shape, 1, torch.float64)
    assert torch.allclose(pair_loss(eps, gen(3)), _reference_pair_loss(eps, gen(3)), rtol=1e-10)
    assert torch.allclose(patch_kl_loss(eps, ref), _reference_kl(eps, ref), rtol=1e-10)


def test_pair_loss_lower_for_white_noise_than_smooth_field():
    shape = (3, 4, 32, 32)
    w, s = pair_loss(white(shape), gen()), pair_loss(smooth(shape), gen())
    assert w.shape == (3,)
    assert (s > 20 * w).all(), (w, s)


def test_kl_zero_at_reference_and_positive_elsewhere():
    eps = white((2, 4, 16, 16), dtype=torch.float64)
    same = patch_kl_loss(eps, eps.clone())
    assert (same.abs() < 1e-4).all()            # only the 1e-6 stabiliser: 64 terms of about 1e-6 / var
    other = patch_kl_loss(eps, 0.5 * white((2, 4, 16, 16), 1, torch.float64))
    assert (other > 100).all()
    # a sample-wise scale changes only that sample's loss
    scaled = eps.clone()
    scaled[1] *= 2
    changed = patch_kl_loss(scaled, eps)
    assert changed[0].abs() < 1e-4 and changed[1] > 100


def test_batch_independence_and_batch_equals_single():
    eps, ref = smooth((3, 4, 16, 16)), white((3, 4, 16, 16), 7)
    reg = NoiseRegularizer(rounds=2)
    out = reg(eps, ref)
    changed = eps.clone()
    changed[1] = white((4, 16, 16), 9)
    reg.reset()
    out_changed = reg(changed, ref)
    assert torch.equal(out[0], out_changed[0]) and torch.equal(out[2], out_changed[2])
    assert not torch.allclose(out[1], out_changed[1])
    for b in range(3):
        reg.reset()
        single = reg(eps[b:b + 1], ref[b:b + 1])
        assert torch.allclose(single, out[b:b + 1], atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 4, 16, 16), (1, 16, 16, 16), (2, 3, 12, 20), (2, 4, 3, 16, 16)])
def test_regularizer_whitens_any_channel_count_and_5d(shape):
    eps = smooth(shape)
    reference = white(shape, 5)
    reg = NoiseRegularizer()
    out = reg(eps, reference)
    assert out.shape == eps.shape and out.dtype == eps.dtype and torch.isfinite(out).all()
    assert (pair_loss(out, gen(1)) < 0.8 * pair_loss(eps, gen(1))).all()
    assert (patch_kl_loss(out, reference) < patch_kl_loss(eps, reference)).all()


def test_kl_only_moves_towards_the_reference_statistics():
    eps = 0.3 * white((2, 4, 16, 16), 0)
    reference = white((2, 4, 16, 16), 1)
    reg = NoiseRegularizer(lambda_pair=0.0, rounds=8)
    out = reg(eps, reference)
    assert (patch_kl_loss(out, reference) < 0.7 * patch_kl_loss(eps, reference)).all()   # measured 0.52
    assert reg.needs_reference and not NoiseRegularizer(lambda_kl=0).needs_reference
    with pytest.raises(ValueError):
        reg(eps)                                     # KL on but no reference
    assert torch.equal(NoiseRegularizer(rounds=0)(eps), eps)


def test_works_inside_inference_mode_and_checks_the_monitor():
    checks = []
    monitor = Monitor(check_interrupt=lambda: checks.append(1))
    reg = NoiseRegularizer(rounds=4, pair_steps=5)
    with torch.inference_mode():
        eps, ref = smooth((1, 4, 16, 16)), white((1, 4, 16, 16), 1)
        out = reg(eps, ref, monitor)
    assert len(checks) == 4 * (1 + 5)
    reg.reset()
    assert torch.allclose(out, reg(smooth((1, 4, 16, 16)), white((1, 4, 16, 16), 1)))
    assert (out - eps).abs().max() > 1e-2


def test_seeded_shifts():
    eps = smooth((1, 4, 32, 32))
    a, b = NoiseRegularizer(seed=1), NoiseRegularizer(seed=1)
    assert torch.equal(a(eps, eps), b(eps, eps))
    assert not torch.equal(NoiseRegularizer(seed=2)(eps, eps), b(eps, eps))


def _official_pair_loss(eps, generator):
    """pix2pix-zero's / ReNoise's ``auto_corr_loss`` written out for one sample and channel at a time: a pyramid
    per channel until H <= 8, at each scale ONE shift r from [0, H/2) used for both axes,
    (mean(e * roll_H(e, r)))^2 + (mean(e * roll_W(e, r)))^2. The official code draws r inside that loop; here the
    draws are taken first, in the pack's order (scale by scale, one per field, shared by the batch), so that the
    two can be compared with the same generator."""
    fields = eps.reshape(eps.shape[0], -1, *eps.shape[-2:])
    shifts, h = [], fields.shape[-2]
    while True:
        shifts.append(torch.randint(0, max(h // 2, 1), (fields.shape[1],), generator=generator))
        if h <= 8:
            break
        h //= 2
    terms = torch.zeros(eps.shape[0], dtype=eps.dtype)
    for b in range(fields.shape[0]):
        for c in range(fields.shape[1]):
            noise = fields[b:b + 1, c:c + 1]
            for scale in shifts:
                r = int(scale[c])
                terms[b] += (noise * torch.roll(noise, shifts=r, dims=2)).mean() ** 2
                terms[b] += (noise * torch.roll(noise, shifts=r, dims=3)).mean() ** 2
                if noise.shape[2] <= 8:
                    break
                noise = F.avg_pool2d(noise, kernel_size=2)
    return terms, torch.cat(shifts)


@pytest.mark.parametrize("shape", [(2, 4, 32, 32), (1, 4, 16, 16), (2, 4, 2, 16, 16)])
def test_official_rolls_match_the_official_loss(shape):
    eps = white(shape, 0, torch.float64)
    expected, shifts = _official_pair_loss(eps, gen(5))
    assert (shifts == 0).any()             # a zero shift occurs: the term (mean e^2)^2 of the official draw
    assert torch.allclose(pair_loss(eps, gen(5), official_rolls=True), expected, rtol=1e-10)
    assert not torch.allclose(pair_loss(eps, gen(5)), expected)       # our default draw differs


def test_off_scale_input_scale_invariant_option():
    eps = 12.0 * smooth((1, 4, 8, 8))
    out = NoiseRegularizer(scale_invariant=True)(eps, eps)
    unit = NoiseRegularizer(scale_invariant=True)(eps / 12.0, eps / 12.0)
    assert torch.allclose(out, 12.0 * unit, rtol=1e-4, atol=1e-4)
    raw = NoiseRegularizer()(eps, eps)             # the official step sizes diverge at this scale ...
    assert torch.isfinite(raw).all()               # ... but a non-finite sample keeps its input
