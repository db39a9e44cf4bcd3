"""The conditional digits demo model (testbed/digits.py): small committed weights, a prompt encoder whose empty
prompt is the unconditional branch, a classifier that recognises held-out digits, and prompts that select the digit
the model generates (with and without guidance)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inversion_core import sample  # noqa: E402
from testbed.digits import EVAL_DATA, WEIGHTS, WORDS, DigitsModel, load_eval, tokenize  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
VE = torch.cat([torch.logspace(math.log10(14.6), math.log10(0.03), 10), torch.zeros(1)])


@pytest.fixture(scope="module")
def model():
    return DigitsModel.load()


def test_weights_and_data_are_small_and_complete():
    assert WEIGHTS.stat().st_size <= 2 * 1024 * 1024          # float16; the weights folder stays under 5 MiB
    data = load_eval()
    assert data["latents"].shape == (100, 4, 8, 8)
    assert sorted(data["labels"].tolist()) == sorted(list(range(10)) * 10)
    assert EVAL_DATA.stat().st_size < 200 * 1024


def test_prompt_encoder_reads_digit_words_and_numerals(model):
    assert tokenize("A photo of a Three, then 8 and nine!") == [3, 8, 9]
    assert tokenize("a cat") == []
    empty = model.encoder.encode("a cat")
    assert empty.shape == (1, 1, 32) and not empty.any()
    three = model.encoder.encode("three")
    assert three.shape == (1, 1, 32)
    assert torch.equal(three, model.encoder.encode("3"))
    assert torch.equal(three[0, 0], model.net.tokens.weight[WORDS.index("three")])


def test_classifier_recognises_held_out_digits(model):
    data = load_eval()
    accuracy = (model.classify(data["latents"]).argmax(1) == data["labels"]).float().mean().item()
    print(f"\nclassifier held-out accuracy {accuracy:.2f}")
    assert accuracy >= 0.9


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_the_prompt_selects_the_generated_digit(model, cfg):
    """10 euler steps from seeded noise with the prompt "k" (cfg: against the empty prompt) give digits the
    classifier reads as k."""
    den = model.denoiser("ve")
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(5)
    context = torch.cat([model.encoder.encode(str(int(k))) for k in labels])
    empty = torch.zeros_like(context)

    def guided(x, sigma):
        c = den(x, sigma, context)
        return c if cfg == 1.0 else den(x, sigma, empty) + cfg * (c - den(x, sigma, empty))

    noise = torch.randn((labels.numel(), 4, 8, 8), generator=g) * float(VE[0])
    with torch.no_grad():
        x0 = sample(guided, noise, VE, parametrization="ve")
    hit = (model.classify(x0).argmax(1) == labels).float().mean().item()
    print(f"\ncfg {cfg}: {hit:.2f} of the generated digits are the prompted one")
    assert hit >= (0.6 if cfg == 1.0 else 0.8)
    # the unconditional branch is a different model than any one prompt
    with torch.no_grad():
        assert (den(noise / 3, torch.full((labels.numel(),), 2.0), context)
                - den(noise / 3, torch.full((labels.numel(),), 2.0), empty)).abs().max() > 0.05
