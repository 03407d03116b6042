#!/usr/bin/env python3
"""Training throughput: `moegrow train` (burn) against PyTorch + transformers on the same model.

Both sides train the same tiny Qwen3-MoE (default: 4 layers, hidden 128, 8 experts top-2,
sequence 256) with the same batch, AdamW (β 0.9/0.95, weight decay 0.1, clip 1.0) and aux-loss
coefficient, on this machine's CPU (or GPU with --device gpu / cuda), and report tokens per
second of optimizer steps after a warmup. The model is created by transformers and saved as a
Hugging Face checkpoint, which `moegrow train --init` then continues, so the two sides start
from identical weights.

    python3 -m venv .venv && .venv/bin/pip install torch==2.15.0 transformers==5.24.0 safetensors==0.8.0 numpy==2.4.6
    cargo build -p moegrow   # dependencies are built with opt-level 3 even in dev builds
    .venv/bin/python tests/bench/train_vs_pytorch.py [--steps 30] [--batch 4] [--threads 2]

Writes a JSON summary to stdout (and to --json if given).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moegrow", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "moegrow"))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", help="cpu, or gpu (moegrow wgpu vs torch cuda)")
    ap.add_argument("--corpus", default=None, help="text for moegrow (default: Rust docs)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = Qwen3MoeConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate * a.top_k,
        moe_intermediate_size=a.intermediate, num_hidden_layers=a.layers,
        num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, head_dim=a.hidden // a.heads,
        num_experts=a.experts, num_experts_per_tok=a.top_k, norm_topk_prob=True,
        output_router_logits=True, router_aux_loss_coef=0.001, max_position_embeddings=4096,
        tie_word_embeddings=False, rms_norm_eps=1e-6,
    )
    model = Qwen3MoeForCausalLM(cfg)
    tmp = Path(tempfile.mkdtemp(prefix="moegrow-train-bench-"))
    ckpt = tmp / "init"
    model.save_pretrained(ckpt)

    # --- PyTorch + transformers ---
    dev = "cuda" if a.device == "gpu" else "cpu"
    model = model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, eps=1e-8)
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(a.warmup_steps + a.steps):
        x = torch.randint(0, a.vocab, (a.batch, a.seq + 1), generator=g).to(dev)
        t0 = time.perf_counter()
        # transformers shifts the labels itself: seq tokens in, seq - 1 predictions scored.
        out = model(input_ids=x[:, :-1], labels=x[:, :-1], output_router_logits=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev == "cuda":
            torch.cuda.synchronize()
        if step >= a.warmup_steps:
            times.append(time.perf_counter() - t0)
    torch_tps = a.batch * a.seq / statistics.median(times)

    # --- moegrow (burn) ---
    out_dir = tmp / "run"
    cmd = [a.moegrow, "train", "--init", str(ckpt), "--out", str(out_dir),
           "--steps", str(a.warmup_steps + a.steps), "--batch-size", str(a.batch),
           "--seq-len", str(a.seq), "--lr", "1e-3", "--schedule", "constant", "--warmup", "1",
           "--aux-coef", "0.001", "--eval-every", "0", "--eval-sequences", "1",
           "--device", a.device, "--vocab-size", str(a.vocab)]
    if a.corpus:
        cmd += ["--corpus", a.corpus]
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    rows = [json.loads(l) for l in (out_dir / "metrics.jsonl").read_text().splitlines()]
    step_tps = [r["tokens_per_s"] for r in rows if r["step"] > a.warmup_steps]
    moegrow_tps = statistics.median(step_tps)

    res = {
        "model": {"layers": a.layers, "hidden": a.hidden, "experts": a.experts, "top_k": a.top_k,
                  "intermediate": a.intermediate, "vocab": a.vocab, "seq": a.seq, "batch": a.batch},
        "device": a.device, "threads": a.threads, "steps_timed": a.steps,
        "torch": {"version": torch.__version__, "tokens_per_s": torch_tps,
                  "median_step_s": statistics.median(times)},
        "moegrow": {"tokens_per_s": moegrow_tps, "wall_s_including_startup": wall},
        "ratio_moegrow_over_torch": moegrow_tps / torch_tps,
    }
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
