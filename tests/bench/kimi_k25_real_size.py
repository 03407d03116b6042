#!/usr/bin/env python3
"""A synthetic Kimi-K2.5 checkpoint at the hub's layer dimensions (hidden 7168, MLA with q LoRA 1536 and kv LoRA 512,
64 heads, routed experts of FFN 2048 in compressed-tensors int4 with BF16 scales per 32 and I32 `weight_shape`, one
shared expert, the router in bf16 and its correction bias in F32), in the `kimi_k25` wrapper with real-size
vision-tower tensors, for measuring moegrow's peak memory and time on real-size int4 experts:

    .venv/bin/python tests/bench/kimi_k25_real_size.py OUT [--layers 1] [--experts 64] [--vocab 8192]
    /usr/bin/time -v target/debug/moegrow grow OUT OUT-w2 --experts 2 --noise 0
    /usr/bin/time -v target/debug/moegrow grow OUT OUT-w2n --experts 2 --noise 0.01
    /usr/bin/time -v target/debug/moegrow convert OUT OUT-bf16 --dtype bf16

The layer is a MoE layer (the hub's layers 1-60): each routed expert matrix is [2048, 7168] or [7168, 2048] int4,
7.3 MB packed with 0.9 MB of scales, as on the hub; only the expert count (384 there), the layer count and the
vocabulary (163840) are smaller, and the vision tower has one of its 27 blocks. The config is
tests/fixtures/hub-configs/Kimi-K2.5.json with num_hidden_layers, first_k_dense_replace (0: every layer MoE),
n_routed_experts and vocab_size changed. Packed codes are uniform random; scales are |N(0, 0.003)|.
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "fixtures", "hub-configs", "Kimi-K2.5.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=8192)
    a = ap.parse_args()
    cfg = json.load(open(CONFIG))
    t = cfg["text_config"]
    t["num_hidden_layers"], t["first_k_dense_replace"] = a.layers, 0
    t["n_routed_experts"], t["vocab_size"] = a.experts, a.vocab
    H, I, E = t["hidden_size"], t["moe_intermediate_size"], a.experts
    nh, ql, kl = t["num_attention_heads"], t["q_lora_rank"], t["kv_lora_rank"]
    qk = t["qk_nope_head_dim"] + t["qk_rope_head_dim"]
    group = t["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"]
    v = cfg["vision_config"]
    D, F = v["vt_hidden_size"], v["vt_intermediate_size"]
    rng = torch.Generator().manual_seed(0)

    def bf16(*shape):
        return (torch.randn(shape, generator=rng) * 0.02).to(torch.bfloat16)

    def int4(rows, cols):
        packed = torch.randint(-2**31, 2**31 - 1, (rows, cols // 8), generator=rng, dtype=torch.int64).to(torch.int32)
        scale = (torch.randn(rows, cols // group, generator=rng).abs() * 0.003).to(torch.bfloat16)
        return packed, scale, torch.tensor([rows, cols], dtype=torch.int32)

    os.makedirs(a.out, exist_ok=True)
    weight_map, total = {}, 0

    def shard(name, tensors):
        nonlocal total
        save_file(tensors, os.path.join(a.out, name), metadata={"format": "pt"})
        for k, x in tensors.items():
            weight_map[k] = name
            total += x.numel() * x.element_size()

    files = a.layers + 1
    first = {"language_model.model.embed_tokens.weight": bf16(a.vocab, H),
             "language_model.model.norm.weight": bf16(H),
             "language_model.lm_head.weight": bf16(a.vocab, H),
             "vision_tower.encoder.blocks.0.wqkv.weight": bf16(3 * D, D),
             "vision_tower.encoder.blocks.0.mlp.fc0.weight": bf16(F, D),
             "vision_tower.encoder.blocks.0.mlp.fc1.weight": bf16(D, F),
             "mm_projector.proj.0.weight": bf16(4 * D, 4 * D),
             "mm_projector.proj.2.weight": bf16(H, 4 * D)}
    shard(f"model-00001-of-{files:05d}.safetensors", first)
    for l in range(a.layers):
        p = f"language_model.model.layers.{l}."
        m = p + "mlp."
        tensors = {
            p + "input_layernorm.weight": bf16(H), p + "post_attention_layernorm.weight": bf16(H),
            p + "self_attn.q_a_proj.weight": bf16(ql, H), p + "self_attn.q_a_layernorm.weight": bf16(ql),
            p + "self_attn.q_b_proj.weight": bf16(nh * qk, ql),
            p + "self_attn.kv_a_proj_with_mqa.weight": bf16(kl + t["qk_rope_head_dim"], H),
            p + "self_attn.kv_a_layernorm.weight": bf16(kl),
            p + "self_attn.kv_b_proj.weight": bf16(nh * (t["qk_nope_head_dim"] + t["v_head_dim"]), kl),
            p + "self_attn.o_proj.weight": bf16(H, nh * t["v_head_dim"]),
            m + "gate.weight": bf16(E, H), m + "gate.e_score_correction_bias": torch.randn(E, generator=rng) * 0.01,
            m + "shared_experts.gate_proj.weight": bf16(I, H), m + "shared_experts.up_proj.weight": bf16(I, H),
            m + "shared_experts.down_proj.weight": bf16(H, I),
        }
        for e in range(E):
            for proj, (rows, cols) in [("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))]:
                q, s, shape = int4(rows, cols)
                x = f"{m}experts.{e}.{proj}."
                tensors[x + "weight_packed"], tensors[x + "weight_scale"], tensors[x + "weight_shape"] = q, s, shape
        shard(f"model-{l + 2:05d}-of-{files:05d}.safetensors", tensors)
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, fh, indent=2)
    with open(os.path.join(a.out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    print(f"{a.out}: {a.layers} layers, {E} experts, {total / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
