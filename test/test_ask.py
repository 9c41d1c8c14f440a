"""The frozen Left brain answers questions: TwinBrainPolicy.ask equals plain transformers generate of
the base VLM, and policy_node's ~/ask serves it from the live camera frames without stopping motion."""


import numpy as np
import pytest
import torch
from conftest import BACKBONES, random_image
from rclpy.parameter import Parameter
from ros_harness import RosGraph
from trajectory_msgs.msg import JointTrajectory
from transformers import (
    AutoTokenizer,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen3VLForConditionalGeneration,
)

from twinbrain_ros.nodes.policy_node import PolicyNode
from twinbrain_ros.srv import Ask

MODEL_CLASSES = {"qwen3_vl": Qwen3VLForConditionalGeneration, "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration}


def plain_generate(base_dir, kind, images, question, max_new_tokens):
    """Reference: the base checkpoint through transformers alone (its tokenizer's chat template, its
    image processor, image placeholders expanded as the Qwen-VL processors do, greedy generate)."""
    model = MODEL_CLASSES[kind].from_pretrained(base_dir, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    processor = Qwen2VLImageProcessorPil.from_pretrained(base_dir, local_files_only=True)
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
    text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)
    vision = processor(images=images, return_tensors="pt") if images else {"image_grid_thw": []}
    for grid in vision["image_grid_thw"]:
        text = text.replace("<|image_pad|>", "<|placeholder|>" * (int(grid.prod()) // processor.merge_size ** 2), 1)
    enc = tokenizer(text.replace("<|placeholder|>", "<|image_pad|>"), return_tensors="pt", add_special_tokens=False)
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    with torch.no_grad():
        out = model.generate(**enc, **(vision if images else {}),
                             mm_token_type_ids=(enc["input_ids"] == image_id).int(),
                             max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return out[0, enc["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("kind", BACKBONES)
def test_ask_equals_plain_transformers_generate(make_policy, tiny_base_dirs, kind):
    policy = make_policy(kind, camera_names=["front", "wrist"])
    front, wrist = random_image(1, 64, 80), random_image(2, 48, 48)
    question = "Which cube is closest to the gripper?"
    ours = policy.answer_ids({"front": front, "wrist": wrist}, question, max_new_tokens=12)
    assert ours == plain_generate(tiny_base_dirs[kind], kind, [front, wrist], question, 12)
    assert len(set(ours)) > 1, "degenerate tiny model: the comparison would prove nothing"
    # the answer depends on what it sees and on what is asked
    assert ours != policy.answer_ids({"front": random_image(3, 64, 80), "wrist": wrist}, question, 12)
    assert ours != policy.answer_ids({"front": front, "wrist": wrist}, "What colour is the table?", 12)
    # one camera of two, and text only
    assert policy.answer_ids({"wrist": wrist}, question, 6) == plain_generate(tiny_base_dirs[kind], kind, [wrist],
                                                                              question, 6)
    assert policy.answer_ids({}, question, 6) == plain_generate(tiny_base_dirs[kind], kind, [], question, 6)
    # predicting actions does not change what the Left brain says
    policy.predict([front, wrist], np.zeros(7), "touch the cube", seed=0)
    assert policy.answer_ids({"front": front, "wrist": wrist}, question, 12) == ours


def test_ask_rejects_bad_input_clearly(make_policy):
    policy = make_policy()
    with pytest.raises(ValueError, match="question must be a non-empty string"):
        policy.ask({}, "   ")
    with pytest.raises(ValueError, match="camera 'front': expected an HxWx3 uint8 RGB image"):
        policy.ask({"front": np.zeros((48, 48), np.uint8)}, "what is this?")
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        policy.ask({}, "hi", max_new_tokens=0)


@pytest.fixture
def graph():
    g = RosGraph()
    yield g
    g.close()


def _ask(graph, question, cameras=(), max_new_tokens=0):
    request = Ask.Request(question=question, cameras=list(cameras), max_new_tokens=max_new_tokens)
    return graph.call(Ask, "/policy_node/ask", request, timeout=30.0)


def test_policy_node_ask_service_answers_from_the_live_frames_while_acting(graph, tiny_base_dirs):
    commands = graph.record(JointTrajectory, "/twinbrain/joint_command")
    node = graph.add(PolicyNode(context=graph.context, parameter_overrides=[
        Parameter("tiny_base_dir", value=str(tiny_base_dirs["qwen3_vl"])), Parameter("ask_max_new_tokens", value=10)]))
    policy = node.policy
    graph.client(Ask, "/policy_node/ask")

    no_frames = _ask(graph, "what do you see?")
    assert not no_frames.success and "no fresh camera frames" in no_frames.message

    graph.start_feed()
    graph.publish_instruction("pick up the red cube")
    assert graph.wait_for(lambda: commands.count() > 20), "the policy is not acting"
    n = commands.count()
    answer = _ask(graph, "Which cube is closest to the gripper?")
    assert answer.success, answer.message
    frames = {c: np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width, 3)
              for c, m in graph.feed.images.items()}
    assert answer.answer == policy.ask(frames, "Which cube is closest to the gripper?", 10)
    assert answer.observation_stamp.sec > 0
    assert graph.wait_for(lambda: commands.count() > n + 20), "setpoints stopped around the question"

    wrist_only = _ask(graph, "Is the gripper open?", cameras=["wrist"], max_new_tokens=4)
    assert wrist_only.success and wrist_only.answer == policy.ask({"wrist": frames["wrist"]}, "Is the gripper open?", 4)
    bad = _ask(graph, "what is this?", cameras=["thermal"])
    assert not bad.success and "unknown camera(s) ['thermal']" in bad.message
    empty = _ask(graph, "")
    assert not empty.success and "question must be a non-empty string" in empty.message
    assert graph.wait_for(lambda: commands.count() > n + 100), "the node stopped acting after bad questions"
