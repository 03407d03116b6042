#!/usr/bin/env python3
"""A synthetic gpt-oss checkpoint at gpt-oss-20b's layer dimensions (hidden 2880, 32 experts of FFN 2880,
64/8 heads of 64, MXFP4 experts as the hub stores them), for measuring moegrow's peak memory and time on
real-size MXFP4 tensors:

    .venv/bin/python tests/bench/gpt_oss_real_size.py OUT [--layers 4] [--vocab 8192]
    /usr/bin/time -v target/debug/moegrow grow OUT OUT-w2 --experts 2 --noise 0       # exact copies
    /usr/bin/time -v target/debug/moegrow grow OUT OUT-w2n --experts 2 --noise 0.01   # requantised copies
    /usr/bin/time -v target/debug/moegrow convert OUT OUT-bf16 --dtype bf16

Only the vocabulary is smaller than the hub's 201088 (the embedding and head are plain bf16 matrices whose
streaming is measured elsewhere); the config is tests/fixtures/hub-configs/gpt-oss-20b.json with
num_hidden_layers, layer_types and vocab_size changed. Values are random: fp4 codes uniform, E8M0
exponents around 2^-6, bf16 tensors N(0, 0.02).
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "fixtures", "hub-configs", "gpt-oss-20b.json")


def bf16(rng, shape, std=0.02):
    return (torch.randn(shape, generator=rng) * std).to(torch.bfloat16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    a = ap.parse_args()
    cfg = json.load(open(CONFIG))
    cfg["num_hidden_layers"] = a.layers
    cfg["layer_types"] = ["sliding_attention", "full_attention"] * (a.layers // 2) + ["sliding_attention"] * (a.layers % 2)
    cfg["vocab_size"] = a.vocab
    H, I, E = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    rng = torch.Generator().manual_seed(0)
    os.makedirs(a.out, exist_ok=True)
    weight_map = {}
    total = 0

    def shard(name, tensors):
        nonlocal total
        save_file(tensors, os.path.join(a.out, name), metadata={"format": "pt"})
        for k, v in tensors.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()

    files = a.layers + 1
    first = {"model.embed_tokens.weight": bf16(rng, (a.vocab, H)), "model.norm.weight": bf16(rng, (H,)),
             "lm_head.weight": bf16(rng, (a.vocab, H))}
    shard(f"model-00001-of-{files:05d}.safetensors", first)
    for l in range(a.layers):
        p = f"model.layers.{l}."
        t = {
            p + "input_layernorm.weight": bf16(rng, (H,)), p + "post_attention_layernorm.weight": bf16(rng, (H,)),
            p + "self_attn.q_proj.weight": bf16(rng, (nh * hd, H)), p + "self_attn.q_proj.bias": bf16(rng, (nh * hd,)),
            p + "self_attn.k_proj.weight": bf16(rng, (nkv * hd, H)), p + "self_attn.k_proj.bias": bf16(rng, (nkv * hd,)),
            p + "self_attn.v_proj.weight": bf16(rng, (nkv * hd, H)), p + "self_attn.v_proj.bias": bf16(rng, (nkv * hd,)),
            p + "self_attn.o_proj.weight": bf16(rng, (H, nh * hd)), p + "self_attn.o_proj.bias": bf16(rng, (H,)),
            p + "self_attn.sinks": bf16(rng, (nh,)),
            p + "mlp.router.weight": bf16(rng, (E, H)), p + "mlp.router.bias": bf16(rng, (E,)),
            p + "mlp.experts.gate_up_proj_bias": bf16(rng, (E, 2 * I)), p + "mlp.experts.down_proj_bias": bf16(rng, (E, H)),
        }
        for name, rows, cols in [("gate_up_proj", 2 * I, H), ("down_proj", H, I)]:
            t[p + f"mlp.experts.{name}_blocks"] = torch.randint(0, 256, (E, rows, cols // 32, 16), generator=rng, dtype=torch.uint8)
            t[p + f"mlp.experts.{name}_scales"] = torch.randint(119, 124, (E, rows, cols // 32), generator=rng, dtype=torch.uint8)
        shard(f"model-{l + 2:05d}-of-{files:05d}.safetensors", t)
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print(f"{a.out}: {a.layers} layers, {total / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
