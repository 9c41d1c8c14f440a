"""What training and inference at GPU scale rely on, checked where a CPU can check it."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from conftest import BACKBONES, random_image
from twinbrain_ros.model import Observation
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


class RecordAttention(TorchFunctionMode):
    """Observes every real scaled_dot_product_attention call (arguments only; the call itself runs)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.calls.append((args[0].shape, args[1].shape, kwargs.get("attn_mask") is not None,
                               kwargs.get("enable_gqa", False)))
        return func(*args, **kwargs)


def _right_features(make_policy, kind):
    policy = make_policy(kind)
    obs = [Observation([random_image(i)], np.linspace(-0.5, 0.5, 7), text) for i, text in
           enumerate(["touch it", "push the blue cube to the left"])]
    inputs, state = policy.prepare(obs)
    return policy, inputs, state


@pytest.mark.parametrize("kind", BACKBONES)
def test_asymot_attention_calls_sdpa_in_a_form_fused_kernels_accept(make_policy, kind):
    """GQA heads repeated before SDPA whenever a mask is given: flash / memory-efficient kernels refuse
    enable_gqa with an explicit mask and SDPA would silently run the math kernel on a GPU."""
    policy, inputs, state = _right_features(make_policy, kind)
    _, left_kv = policy.model.left_forward(inputs["left"])
    with torch.no_grad(), RecordAttention() as seen:
        policy.model.right_forward(inputs["right"], state, left_kv, inputs["left"]["attention_mask"])
    joint = [c for c in seen.calls if c[1][2] > inputs["right"]["input_ids"].shape[1]]   # over [Left ; Right] keys
    assert len(joint) == policy.model.right.config.text_config.num_hidden_layers
    for q_shape, k_shape, masked, gqa in joint:
        assert masked and not gqa and q_shape[1] == k_shape[1], (q_shape, k_shape, gqa)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels are CUDA kernels")
def test_asymot_runs_on_the_memory_efficient_kernel_on_cuda(make_policy):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    policy, inputs, state = _right_features(make_policy, "qwen3_vl")
    policy.model.cuda()
    inputs = {k: {n: t.cuda() for n, t in v.items()} for k, v in inputs.items()}
    _, left_kv = policy.model.left_forward(inputs["left"])
    reference = policy.model.right_forward(inputs["right"], state.cuda(), left_kv, inputs["left"]["attention_mask"])
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):   # raises if SDPA would need the math kernel
        fused = policy.model.right_forward(inputs["right"], state.cuda(), left_kv, inputs["left"]["attention_mask"])
    torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-4)
