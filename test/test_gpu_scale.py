"""What training and inference at GPU scale rely on, checked where a CPU can check it."""

import pytest
import torch

from twinbrain_ros.model.action_expert import FlowMatchingActionExpert, gaussian_noise
from twinbrain_ros.model.configuration_twinbrain import ActionExpertConfig

DEVICES = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])


def _expert():
    torch.manual_seed(0)
    return FlowMatchingActionExpert(ActionExpertConfig(width=32, heads=4, layers=2, future_tokens=2, state_hidden=16),
                                    action_dim=3, chunk_length=5, cond_dim=24)


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_noise_is_drawn_on_the_generator_device_whatever_the_model_device(device):
    """The trainer's generators live on the CPU; the model may live anywhere (CUDA refuses a CPU
    generator for a CUDA tensor). The seeded draw is the same on every device."""
    expert = _expert().to(device)
    features, mask = torch.randn(2, 6, 24), torch.ones(2, 6)
    actions, action_mask = torch.rand(2, 5, 3), torch.ones(2, 5)
    condition = expert.encode_condition(features.to(device), mask.to(device))
    loss = expert.loss(condition, actions.to(device), action_mask.to(device), draws=2,
                       generator=torch.Generator().manual_seed(3))
    assert loss.device.type == device and loss.shape == ()
    chunk = expert.sample(condition, 2, steps=2, generator=torch.Generator().manual_seed(3))
    assert chunk.device.type == device and chunk.shape == (2, 5, 3)
    noise = gaussian_noise((4, 5, 3), device, torch.Generator().manual_seed(1))
    assert noise.device.type == device
    if device != "meta":
        reference = _expert()
        ref_condition = reference.encode_condition(features, mask)
        expected = reference.loss(ref_condition, actions, action_mask, draws=2,
                                  generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(loss.cpu(), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(noise.cpu(), torch.randn((4, 5, 3), generator=torch.Generator().manual_seed(1)))
