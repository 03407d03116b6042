"""Forward-pass throughput: moegrow's CPU reference against transformers on the same checkpoint.

Both run on this machine's CPU in float32 over the same token sequence; moegrow's time is measured
inside the binary (`moegrow forward --bench N`, load excluded), transformers' with the model
already loaded, eager attention, torch.no_grad(). Prints one JSON line with both medians and the
ratio (moegrow tokens/s ÷ transformers tokens/s).

Usage (venv from tests/fixtures/generate.py's header):
    cargo build --release -p moegrow
    .venv/bin/python tests/bench/forward_vs_transformers.py [--checkpoint DIR] [--tokens 256] [--runs 5]
Without --checkpoint it makes one with `moegrow init --preset base100m` (~100M parameters).
"""
import argparse, json, os, subprocess, sys, tempfile, time
import statistics

import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "moegrow"))
    a = p.parse_args()
    tmp = None
    ckpt = a.checkpoint
    if ckpt is None:
        tmp = tempfile.mkdtemp()
        ckpt = os.path.join(tmp, "base100m")
        subprocess.run([a.bin, "init", ckpt, "--preset", "base100m", "--seed", "0"], check=True)
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg["vocab_size"], (a.tokens,), generator=gen).tolist()
    tok_arg = ",".join(map(str, tokens))

    env = dict(os.environ, MATMUL_NUM_THREADS=str(a.threads))
    out = subprocess.run([a.bin, "forward", ckpt, "--tokens", tok_arg, "--bench", str(a.runs)],
                         check=True, capture_output=True, text=True, env=env).stdout
    ours = json.loads(out.strip().splitlines()[-1])

    torch.set_num_threads(a.threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    ids = torch.tensor([tokens])
    times = []
    with torch.no_grad():
        model(ids)  # warm-up
        for _ in range(a.runs):
            t = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - t)
    theirs = statistics.median(times)
    result = {
        "checkpoint": ckpt,
        "parameters": model.num_parameters(),
        "tokens": a.tokens,
        "threads": a.threads,
        "moegrow_median_s": ours["median_forward_s"],
        "moegrow_tokens_per_s": ours["tokens_per_s"],
        "transformers_median_s": theirs,
        "transformers_tokens_per_s": a.tokens / theirs,
        "ratio_moegrow_over_transformers": ours["tokens_per_s"] / (a.tokens / theirs),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
