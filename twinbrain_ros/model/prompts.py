"""Observation -> model inputs for both brains: prompts, chat template, image placeholders.

Left prompt (the unmodified VLM's view):
    system "You are a helpful robot brain that can understand images and texts."
    user   <image per camera> Instruction: {instruction}
Right prompt: the same, then "Robot: {robot_type}. State: <|propri|>. Predict the next action."
Because the Right prompt starts with the Left prompt, index-aligned visibility lets the last Right
tokens see the whole Left prompt. Images are placed in ``config.camera_names`` order in both.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import torch

from .configuration_twinbrain import LEFT_SYSTEM_PROMPT, STATE_TOKEN, TwinBrainConfig

IMAGE_PLACEHOLDER = "<|image_pad|>"


def check_rgb(name: str, img) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"camera {name!r}: expected an HxWx3 uint8 RGB image, got shape {img.shape} dtype {img.dtype}")
    if min(img.shape[:2]) < 16:
        raise ValueError(f"camera {name!r}: image {img.shape[1]}x{img.shape[0]} is too small (min 16 px)")
    return img


def make_right_tokenizer(tokenizer):
    """The Right brain's tokenizer: the base one plus the state placeholder (Left's stays untouched)."""
    right = copy.deepcopy(tokenizer)
    right.add_special_tokens({"additional_special_tokens": [STATE_TOKEN]}, replace_extra_special_tokens=False)
    return right


class PromptProcessor:
    def __init__(self, config: TwinBrainConfig, tokenizer, right_tokenizer, image_processor):
        self.config = config
        self.left_tokenizer, self.right_tokenizer = tokenizer, right_tokenizer
        self.image_processor = image_processor
        for tok in (tokenizer, right_tokenizer):
            tok.padding_side = "right"
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        self.state_token_id = right_tokenizer.convert_tokens_to_ids(STATE_TOKEN)

    # -- validation ---------------------------------------------------------------------------
    def check_images(self, images) -> list[np.ndarray]:
        names = self.config.camera_names
        if isinstance(images, dict):
            missing = [n for n in names if n not in images]
            if missing:
                raise ValueError(f"missing camera image(s) {missing}; expected cameras {names}")
            images = [images[n] for n in names]
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        images = list(images)
        if len(images) != len(names):
            raise ValueError(f"expected {len(names)} camera image(s) {names}, got {len(images)}")
        out = []
        for name, img in zip(names, images):
            img = check_rgb(name, img)
            h, w = self.config.image_size
            if img.shape[:2] != (h, w):
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            out.append(img)
        return out

    @staticmethod
    def check_instruction(instruction) -> str:
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        return instruction.strip()

    def check_state(self, state) -> np.ndarray:
        state = np.asarray(state, dtype=np.float32).reshape(-1)
        if state.shape[0] != self.config.state_dim:
            raise ValueError(f"state has {state.shape[0]} values, expected state_dim={self.config.state_dim}")
        if not np.all(np.isfinite(state)):
            raise ValueError(f"state contains NaN/inf: {state.tolist()}")
        return state

    # -- prompts ------------------------------------------------------------------------------
    def messages(self, instruction: str, right: bool) -> list[dict]:
        content = [{"type": "image"} for _ in self.config.camera_names]
        text = f"Instruction: {instruction}"
        if right:
            text += f"\nRobot: {self.config.robot_type}. State: {STATE_TOKEN}. Predict the next action."
        content.append({"type": "text", "text": text})
        return [{"role": "system", "content": LEFT_SYSTEM_PROMPT}, {"role": "user", "content": content}]

    def _tokenize(self, tokenizer, texts: list[str], tokens_per_image: list[int]) -> dict:
        """Tokenize, with each image placeholder repeated once per merged vision patch (what the Qwen-VL
        processors do)."""
        expanded, k = [], 0
        for text in texts:
            parts = text.split(IMAGE_PLACEHOLDER)
            out = parts[0]
            for part in parts[1:]:
                out += IMAGE_PLACEHOLDER * tokens_per_image[k] + part
                k += 1
            expanded.append(out)
        enc = tokenizer(expanded, return_tensors="pt", padding=True, add_special_tokens=False)
        ids = enc["input_ids"]
        return {"input_ids": ids, "attention_mask": enc["attention_mask"],
                "mm_token_type_ids": (ids == self.image_token_id).int()}

    def _vision(self, frames: list[np.ndarray]) -> tuple[dict, list[int]]:
        """Image processor outputs for all frames, and how many placeholder tokens each image takes."""
        vision = self.image_processor(images=frames, return_tensors="pt")
        merge = self.image_processor.merge_size ** 2
        return vision, [int(g.prod()) // merge for g in vision["image_grid_thw"]]

    def encode(self, images_per_sample: list[list[np.ndarray]], instructions: list[str]) -> dict:
        """Checked images + instructions -> {"left": inputs, "right": inputs} (tensors on CPU)."""
        vision, tokens_per_image = self._vision([img for imgs in images_per_sample for img in imgs])
        out = {}
        for side, tok in (("left", self.left_tokenizer), ("right", self.right_tokenizer)):
            texts = [tok.apply_chat_template(self.messages(ins, side == "right"), tokenize=False,
                                             add_generation_prompt=True) for ins in instructions]
            out[side] = self._tokenize(tok, texts, tokens_per_image)
            out[side]["pixel_values"] = vision["pixel_values"]
            out[side]["image_grid_thw"] = vision["image_grid_thw"]
        return out


    def encode_question(self, images: dict[str, np.ndarray], question: str) -> dict:
        """A plain chat turn for the Left brain (``TwinBrainPolicy.ask``): the base model's own chat
        template, no system prompt of ours, the camera frames as they are (the image processor sizes
        them), then the generation prompt."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"question must be a non-empty string, got {question!r}")
        frames = [check_rgb(name, img) for name, img in images.items()]
        content = [{"type": "image"} for _ in frames] + [{"type": "text", "text": question.strip()}]
        text = self.left_tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                       add_generation_prompt=True)
        if not frames:
            return self._tokenize(self.left_tokenizer, [text], [])
        vision, tokens_per_image = self._vision(frames)
        inputs = self._tokenize(self.left_tokenizer, [text], tokens_per_image)
        inputs.update(pixel_values=vision["pixel_values"], image_grid_thw=vision["image_grid_thw"])
        return inputs


def to_device(inputs: dict, device, dtype=None) -> dict:
    moved = {}
    for key, value in inputs.items():
        if isinstance(value, dict):
            moved[key] = to_device(value, device, dtype)
        elif torch.is_tensor(value):
            value = value.to(device)
            moved[key] = value.to(dtype) if (dtype is not None and value.is_floating_point()) else value
        else:
            moved[key] = value
    return moved
