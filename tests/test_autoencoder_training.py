import pytest
import torch

from amal.experiments.autoencoder import AutoencoderConfig
from amal.experiments.autoencoder_training import ResidentBatches, evaluate, warm_up
from amal.models import TiedAutoencoder, reconstruction_loss


@pytest.mark.parametrize("resident", [False, True])
def test_the_warm_up_trains_a_copy_on_both_batch_shapes_and_draws_no_random_number(resident):
    """A full batch and the epoch's shorter last one, fed as the run feeds them (resident: an order drawn from a
    generator of its own, copied and gathered on the device); the model and every global RNG untouched."""
    cfg = AutoencoderConfig(hidden=(8,), batch_size=64, data_on_device=resident, warmup_steps=2)
    model = TiedAutoencoder(784, (8,))
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    shapes, epoch = [], ResidentBatches.epoch

    def spy(self, transfer):
        batches = list(epoch(self, transfer))
        shapes.append([len(batch) for batch in batches])
        return iter(batches)

    vectors = torch.rand(100, 784)
    rng = torch.get_rng_state()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ResidentBatches, "epoch", spy)
        warm_up(model, cfg, vectors, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items())
    assert shapes == ([[64, 36], [64, 36]] if resident else [])


@pytest.mark.parametrize("loss_fn", ["bce", "mse"])
def test_evaluate_in_chunks_is_the_mean_over_every_pixel(loss_fn):
    """Chunks of 7 images (the last of 2) give the mean per pixel of the whole set, as one pass would."""
    torch.manual_seed(0)
    model, vectors = TiedAutoencoder(784, (8,)), torch.rand(23, 784, dtype=torch.float64)
    model = model.double()
    with torch.no_grad():
        whole = reconstruction_loss(model.logits(vectors), vectors, loss_fn).item()
    assert evaluate(model, vectors, loss_fn, torch.device("cpu"), chunk=7) == pytest.approx(whole, rel=1e-12)
