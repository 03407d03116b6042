#!/usr/bin/env python3
"""A synthetic Llama-4 Scout checkpoint at the hub's layer dimensions (hidden 5120, 16 experts of FFN 8192
stacked input-major, a shared expert, 40/8 heads of 128, bf16), in the multimodal wrapper with real-size
vision-tower tensors, for measuring moegrow's peak memory and time on real-size stacked experts:

    .venv/bin/python tests/bench/llama4_real_size.py OUT [--layers 1] [--vocab 8192] [--experts 16]
    /usr/bin/time -v target/debug/moegrow grow OUT OUT-w2 --experts 2 --noise 0
    /usr/bin/time -v target/debug/moegrow grow OUT OUT-d2 --depth 2 --zero-init-copies
    /usr/bin/time -v target/debug/moegrow convert OUT OUT-f32 --dtype f32

One layer's `feed_forward.experts.gate_up_proj` is [16, 5120, 16384] bf16, 2.7 GB (Maverick's, 128 experts,
21 GB; `--experts 128` makes one). Only the vocabulary is smaller than the hub's 202048 and the vision tower
has one of its 34 layers (both plain bf16 matrices whose streaming is measured elsewhere); the config is
tests/fixtures/hub-configs/Llama-4-Scout-17B-16E-Instruct.json with num_hidden_layers, vocab_size (and
num_local_experts) changed and a vision_config added. Values are N(0, 0.02).
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "fixtures", "hub-configs", "Llama-4-Scout-17B-16E-Instruct.json")
VISION = {"hidden_act": "gelu", "hidden_size": 1408, "image_size": 336, "intermediate_size": 5632,
          "model_type": "llama4_vision_model", "multi_modal_projector_bias": False, "norm_eps": 1e-05,
          "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 1, "patch_size": 14,
          "pixel_shuffle_ratio": 0.5, "projector_input_dim": 4096, "projector_output_dim": 4096,
          "rope_theta": 10000, "vision_feature_layer": -1, "vision_feature_select_strategy": "default",
          "vision_output_dim": 4096}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--experts", type=int, default=16)
    a = ap.parse_args()
    cfg = json.load(open(CONFIG))
    t = cfg["text_config"]
    t["num_hidden_layers"], t["vocab_size"], t["num_local_experts"] = a.layers, a.vocab, a.experts
    cfg["vision_config"] = VISION
    H, I, E = t["hidden_size"], t["intermediate_size"], a.experts
    nh, nkv, hd = t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
    rng = torch.Generator().manual_seed(0)

    def bf16(*shape):
        return (torch.randn(shape, generator=rng) * 0.02).to(torch.bfloat16)

    os.makedirs(a.out, exist_ok=True)
    weight_map, total = {}, 0

    def shard(name, tensors):
        nonlocal total
        save_file(tensors, os.path.join(a.out, name), metadata={"format": "pt"})
        for k, v in tensors.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()

    files = a.layers + 1
    V = VISION["hidden_size"]
    patches = (VISION["image_size"] // VISION["patch_size"]) ** 2 + 1
    first = {"language_model.model.embed_tokens.weight": bf16(a.vocab, H),
             "language_model.model.norm.weight": bf16(H),
             "language_model.lm_head.weight": bf16(a.vocab, H),
             "vision_model.class_embedding": bf16(V), "vision_model.positional_embedding_vlm": bf16(patches, V),
             "vision_model.patch_embedding.linear.weight": bf16(V, 3 * 14 * 14),
             "vision_model.model.layers.0.mlp.fc1.weight": bf16(VISION["intermediate_size"], V),
             "vision_model.model.layers.0.mlp.fc2.weight": bf16(V, VISION["intermediate_size"]),
             "multi_modal_projector.linear_1.weight": bf16(H, VISION["vision_output_dim"])}
    shard(f"model-00001-of-{files:05d}.safetensors", first)
    for l in range(a.layers):
        p = f"language_model.model.layers.{l}."
        f = p + "feed_forward."
        tensors = {
            p + "input_layernorm.weight": bf16(H), p + "post_attention_layernorm.weight": bf16(H),
            p + "self_attn.q_proj.weight": bf16(nh * hd, H), p + "self_attn.k_proj.weight": bf16(nkv * hd, H),
            p + "self_attn.v_proj.weight": bf16(nkv * hd, H), p + "self_attn.o_proj.weight": bf16(H, nh * hd),
            f + "router.weight": bf16(E, H),
            f + "shared_expert.gate_proj.weight": bf16(I, H), f + "shared_expert.up_proj.weight": bf16(I, H),
            f + "shared_expert.down_proj.weight": bf16(H, I),
            f + "experts.gate_up_proj": bf16(E, H, 2 * I), f + "experts.down_proj": bf16(E, I, H),
        }
        shard(f"model-{l + 2:05d}-of-{files:05d}.safetensors", tensors)
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, fh, indent=2)
    with open(os.path.join(a.out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    print(f"{a.out}: {a.layers} layers, {total / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
