"""The VLM backbones TwinBrainVLA is built on: Qwen3-VL and Qwen2.5-VL through transformers.

Two ways to get a base VLM:
  * ``load_base(path)`` — a local checkpoint directory or HF-cache snapshot (what a robot uses);
  * ``make_tiny_base(dir, kind)`` — a tiny random model of the *same* transformers architecture,
    with a byte-level tokenizer and image processor built in code, saved like a real checkpoint so
    every later step (policy, training, ``ask``) goes through the same loading path.

No weights are ever downloaded: ``load_base`` passes ``local_files_only=True``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

transformers.utils.logging.disable_progress_bar()   # no per-shard bars in robot logs

# Qwen's chat special tokens; the tiny tokenizer reproduces them so prompts look like the real ones.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
)

# The chat template of the Qwen-VL instruct checkpoints, reduced to what we use (text + images).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

BACKBONES = {
    "qwen3_vl": (Qwen3VLConfig, Qwen3VLForConditionalGeneration),
    "qwen2_5_vl": (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration),
}


@dataclass
class BaseVLM:
    """A loaded base VLM: the model (with LM head, so the Left brain can still chat), its tokenizer
    and image processor, and where it came from."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerFast
    image_processor: object
    kind: str
    path: str | None = None
    sha256: str | None = None   # weights_sha256 as built (tiny specs: before any dtype cast); None: not computed


def backbone_kind(config) -> str:
    for kind, (config_cls, _) in BACKBONES.items():
        if isinstance(config, config_cls):
            return kind
    raise ValueError(f"unsupported backbone {type(config).__name__}; supported: {sorted(BACKBONES)}")


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + Qwen's special tokens), built in code: no download."""
    alphabet = sorted(set(pre_tokenizers.ByteLevel.alphabet()))
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return _with_qwen_specials(tok)


# Words of the prompts (prompts.py, the sim's tasks) the word tokenizer learns whole, as Qwen's BPE
# (151k tokens) encodes common English words as one token each.
PROMPT_WORDS = (
    "system user assistant You are a helpful robot brain that can understand images and texts. "
    "Instruction: Robot: 6-DoF arm with parallel gripper. State: Predict the next action. "
    "pick up the red cube push the blue cube to the left touch the green cube lift it high put place move "
    "open close grasp on in of from right top side table slowly quickly yellow block bowl drawer "
    "tap put your fingers lift grab and slide shove"
)


def build_word_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer whose prompts are as long as with Qwen's real one: byte-level BPE with merges trained
    here on the prompts' words (unknown words fall back to bytes), for benchmarks that need real token
    counts without downloading the real tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    words = PROMPT_WORDS.split()
    tok.train_from_iterator(words + [" " + w for w in words], trainer)   # after a space and at a line start
    return _with_qwen_specials(tok)


def _with_qwen_specials(tok: Tokenizer) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    fast.chat_template = CHAT_TEMPLATE
    return fast


# The real checkpoints' preprocessor_config.json: (patch size, min pixels, max pixels), merge size 2.
# Qwen3-VL's min_pixels of 256² upsizes a 224² camera image to 256²: 64 image tokens, as the real model sees.
REAL_IMAGE_PIXELS = {"qwen3_vl": (16, 256 * 256, 16777216), "qwen2_5_vl": (14, 56 * 56, 12845056)}


def build_image_processor(kind: str, patch_size: int, max_side: int = 448, real: bool = False):
    """The tiny presets' processor (small images stay small); ``real``: the real checkpoint's pixel limits."""
    # The PIL backend: the default one needs torchvision, which is not installed beside torch 2.13 here.
    min_pixels, max_pixels = (2 * patch_size) ** 2, max_side * max_side
    if real:
        patch_size, min_pixels, max_pixels = REAL_IMAGE_PIXELS[kind]
    return Qwen2VLImageProcessorPil(
        patch_size=patch_size, merge_size=2, temporal_patch_size=2, min_pixels=min_pixels, max_pixels=max_pixels,
    )


def _token_ids(tokenizer) -> dict:
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    tokens = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
    ids = dict(zip(names, tokenizer.convert_tokens_to_ids(tokens)))
    ids.update(bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    return ids


def tiny_config(kind: str, vocab_size: int, token_ids: dict, hidden: int = 64, layers: int = 2,
                vision_hidden: int = 32):
    """A tiny random config of the real architecture (same code paths: M-RoPE, GQA, DeepStack, windows)."""
    heads, kv_heads, head_dim = 4, 2, hidden // 4
    # M-RoPE's (t, h, w) sections share head_dim / 2 rotary frequencies: 2:3:3 of them at every size
    mrope = [head_dim // 16 * k for k in (2, 3, 3)]
    if sum(mrope) != head_dim // 2:
        raise ValueError(f"tiny config: head_dim {head_dim} (hidden {hidden} / 4 heads) must be a multiple of 16")
    # initializer_range 0.2 (not 0.02): at the default the random tiny LM emits one token forever, so its
    # greedy answers would not depend on the image or question and could not be told apart in tests.
    text = dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                head_dim=head_dim, max_position_embeddings=4096, tie_word_embeddings=True, initializer_range=0.2)
    text.update({k: token_ids[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in token_ids})
    vision_heads = vision_hidden // 16
    if kind == "qwen3_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                                   "mrope_section": mrope, "mrope_interleaved": True}
        vision = dict(depth=2, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                      num_heads=vision_heads, out_hidden_size=hidden,
                      patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                      deepstack_visual_indexes=[0, 1], num_position_embeddings=196)
        return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                             initializer_range=0.2, **token_ids)
    if kind == "qwen2_5_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope}
        vision = dict(depth=2, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                      num_heads=vision_heads, out_hidden_size=hidden,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                      fullatt_block_indexes=[1])
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                                initializer_range=0.2, **token_ids)
    raise ValueError(f"unknown backbone kind {kind!r}; choose one of {sorted(BACKBONES)}")


def qwen3_vl_4b_config(vocab_size: int = 151936, token_ids: dict | None = None) -> Qwen3VLConfig:
    """The real Qwen3-VL-4B-Instruct dimensions (random weights when instantiated): for benchmarks."""
    token_ids = token_ids or dict(image_token_id=151655, video_token_id=151656,
                                  vision_start_token_id=151652, vision_end_token_id=151653)
    text = dict(vocab_size=vocab_size, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=262144,
                rms_norm_eps=1e-6, tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                 "mrope_section": [24, 20, 20], "mrope_interleaved": True})
    vision = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2560,
                  patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                  deepstack_visual_indexes=[5, 11, 17], num_position_embeddings=2304)
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **token_ids)


def build_base(kind: str, config=None, seed: int = 0, tokenizer=None, real_image_processor: bool = False,
               size: str = "xs") -> BaseVLM:
    """A base VLM from a config (random weights). Tiny by default (``size``: a ``TINY_SIZES`` preset);
    ``real_image_processor``: images are sized (and so tokenized) as the real checkpoint's processor does."""
    tokenizer = tokenizer or build_tiny_tokenizer()
    config = config or tiny_config(kind, len(tokenizer), _token_ids(tokenizer), **TINY_SIZES[size])
    torch.manual_seed(seed)
    model = BACKBONES[kind][1](config).eval()
    patch = config.vision_config.patch_size
    return BaseVLM(model, tokenizer, build_image_processor(kind, patch, real=real_image_processor), kind)


TINY_PREFIX = "tiny:"
# byte: every character one token. word: the prompts' words one token each (as with Qwen's real BPE), so
# a colour is one token the tiny brains can bind to the image, not 3-5 bytes they must first assemble.
TINY_TOKENIZERS = {"byte": build_tiny_tokenizer, "word": build_word_tokenizer}
# xs: the CPU preset of tests, the demo and the shipped checkpoint. s: twice the layers and widths, for
# the language-following runs (binding a colour word to a place in the image takes more than 2 layers).
TINY_SIZES = {"xs": dict(hidden=64, layers=2, vision_hidden=32),
              "s": dict(hidden=128, layers=4, vision_hidden=64)}


def tiny_base_spec(kind: str = "qwen3_vl", seed: int = 0, tokenizer: str = "byte", size: str = "xs") -> str:
    """The ``base_model_path`` of the tiny random base built in code from ``seed`` (``tiny:qwen3_vl:0``,
    ``tiny:qwen3_vl:0:word``, ``tiny:qwen3_vl:0:word:s``): a checkpoint trained on it names no file, so it
    loads on any machine."""
    if tokenizer not in TINY_TOKENIZERS:
        raise ValueError(f"tiny tokenizer {tokenizer!r}: choose one of {sorted(TINY_TOKENIZERS)}")
    if size not in TINY_SIZES:
        raise ValueError(f"tiny size {size!r}: choose one of {sorted(TINY_SIZES)}")
    spec = f"{TINY_PREFIX}{kind}:{seed}"
    if size != "xs":
        return f"{spec}:{tokenizer}:{size}"
    return spec + (f":{tokenizer}" if tokenizer != "byte" else "")


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict (name, dtype, shape, bytes; in name order): the same
    weights give the same hash whatever file or process they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _build_tiny_from_spec(spec: str) -> BaseVLM:
    parts = spec[len(TINY_PREFIX):].split(":")
    try:
        kind, seed = parts[0], int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        kind = ""
    tokenizer = parts[2] if len(parts) > 2 else "byte"
    size = parts[3] if len(parts) > 3 else "xs"
    if kind not in BACKBONES or len(parts) > 4 or tokenizer not in TINY_TOKENIZERS or size not in TINY_SIZES:
        raise ValueError(f"base VLM {spec!r}: expected tiny:<{'|'.join(BACKBONES)}>[:<seed>"
                         f"[:<{'|'.join(TINY_TOKENIZERS)}>[:<{'|'.join(TINY_SIZES)}>]]]")
    base = build_base(kind, seed=seed, tokenizer=TINY_TOKENIZERS[tokenizer](), size=size)
    base.path = spec
    return base


def make_tiny_base(directory: str | Path, kind: str = "qwen3_vl", seed: int = 0) -> Path:
    """Write a tiny random base VLM to ``directory`` in the layout of a real checkpoint."""
    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    base = build_base(kind, seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    base.model.save_pretrained(directory, safe_serialization=True)
    base.tokenizer.save_pretrained(directory)
    base.image_processor.save_pretrained(directory)
    return directory


def load_base(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu",
              attn_implementation: str = "sdpa") -> BaseVLM:
    """Load a base VLM from a local checkpoint directory or HF-cache snapshot (never downloads), or build
    the tiny random one a ``tiny:`` spec names (``tiny_base_spec``)."""
    if str(path).startswith(TINY_PREFIX):
        base = _build_tiny_from_spec(str(path))
        base.sha256 = weights_sha256(base.model)
        base.model.to(device=device, dtype=dtype)
        return base
    path = Path(path).expanduser()
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"base VLM: no config.json in {path} (expected a local Qwen3-VL / Qwen2.5-VL "
                                "checkpoint directory; weights are never downloaded)")
    model_type = json.loads(config_file.read_text()).get("model_type")
    kinds = {"qwen3_vl": "qwen3_vl", "qwen2_5_vl": "qwen2_5_vl"}
    if model_type not in kinds:
        raise ValueError(f"base VLM {config_file}: model_type {model_type!r} is not supported; "
                         f"use one of {sorted(kinds)}")
    kind = kinds[model_type]
    model = BACKBONES[kind][1].from_pretrained(path, dtype=dtype, local_files_only=True,
                                               attn_implementation=attn_implementation).to(device).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHAT_TEMPLATE
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, local_files_only=True)
    return BaseVLM(model, tokenizer, image_processor, kind, str(path))
