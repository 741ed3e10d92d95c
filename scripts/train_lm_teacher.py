"""Train the character-level teacher of lesson 09 (``kdcourse/assets/lm_teacher.pt``), on a CPU.

What it trains
    ``kdcourse.models.CharTransformer(vocab_size=97, context=64, width=96, depth=3, heads=4)``
    (about 0.36 M parameters): a causal transformer over the characters of Python's own help
    pages (``kdcourse.text``: ``pydoc_data.topics``, the training split only).

Optimisation
    Next-character cross-entropy on random 64-character windows, batch ``--batch-size``
    (default 64), AdamW (betas 0.9/0.99, weight decay 0.01), learning rate 2e-3 with a linear
    warm-up over 200 steps then cosine decay to 10 %, gradient clipping at 1, ``--steps`` steps
    (default 4000), seed 0, ``--threads`` CPU threads. No label smoothing (it would flatten the
    soft targets the students learn from).

Outputs (in ``--out-dir``, default ``kdcourse/assets``)
    - ``lm_teacher.pt``: a plain ``state_dict``, loadable with ``torch.load(path,
      weights_only=True)``; load it with ``kdcourse.teachers.load_lm_teacher()``;
    - ``lm_teacher.json``: the sidecar with the architecture, parameter count, recipe, the
      validation/test bits per character, training seconds, machine, the corpus's SHA-256 and
      Python version, and the checkpoint's SHA-256 (``kdcourse/teachers.py`` hard-codes it as
      ``LM_TEACHER_SHA256``: update it after retraining into the assets);
    - ``lm_teacher_text.txt``: text the teacher wrote, for sequence-level distillation: one
      continuation of ``--sample-chars`` characters, sampled at temperature 1, after each of
      ``--samples`` prompts (the first 32 characters of evenly spaced training windows), one per
      line block separated by a blank line. Its SHA-256 goes in the sidecar too.

Usage (the shipped teacher)::

    python scripts/train_lm_teacher.py

A smoke test (seconds): ``python scripts/train_lm_teacher.py --steps 20 --samples 4 --out-dir /tmp/lmt``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdcourse.lm import LMRecipe, bits_per_char, generate, label_batches, train_char_model  # noqa: E402
from kdcourse.models import CharTransformer, count_parameters  # noqa: E402
from kdcourse.text import decode, load_text_data, windows  # noqa: E402

ARCH = {"context": 64, "width": 96, "depth": 3, "heads": 4}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--sample-chars", type=int, default=256)
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "kdcourse" / "assets"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    data = load_text_data()
    torch.manual_seed(args.seed)
    teacher = CharTransformer(data.vocab_size, **ARCH)
    recipe = LMRecipe(steps=args.steps, batch_size=args.batch_size, lr=2e-3, weight_decay=0.01, warmup=200)
    start = time.perf_counter()
    history = train_char_model(teacher, label_batches(data.train, ARCH["context"], args.batch_size), recipe,
                               seed=args.seed)
    seconds = time.perf_counter() - start
    val_bpc, test_bpc = bits_per_char(teacher, data.val), bits_per_char(teacher, data.test)
    print(f"trained {args.steps} steps in {seconds:.0f} s: final loss {history.loss[-1]:.3f}, "
          f"val {val_bpc:.3f} bpc, test {test_bpc:.3f} bpc")

    checkpoint = out / "lm_teacher.pt"
    torch.save({k: v.detach().cpu().contiguous() for k, v in teacher.state_dict().items()}, checkpoint)

    # sequence-level distillation data: the teacher's own continuations of training prompts
    inputs, _ = windows(data.train, ARCH["context"])
    rows = torch.linspace(0, len(inputs) - 1, args.samples).long()
    prompts = inputs[rows, :32]
    generator = torch.Generator().manual_seed(args.seed)
    start_gen = time.perf_counter()
    ids = generate(teacher, prompts, args.sample_chars, temperature=1.0, generator=generator)
    text = "\n\n".join(decode(row[32:]) for row in ids)
    text_path = out / "lm_teacher_text.txt"
    text_path.write_text(text, encoding="utf-8")
    print(f"generated {len(text):,} characters in {time.perf_counter() - start_gen:.0f} s")

    info = {
        "model": "kdcourse.models.CharTransformer",
        "architecture": teacher.architecture(),
        "parameters": count_parameters(teacher),
        "checkpoint": checkpoint.name,
        "sha256": sha256(checkpoint),
        "corpus": "pydoc_data.topics (kdcourse.text)",
        "corpus_sha256": data.sha256,
        "python": data.python,
        "recipe": {"steps": recipe.steps, "batch_size": recipe.batch_size, "lr": recipe.lr,
                   "weight_decay": recipe.weight_decay, "warmup": recipe.warmup, "schedule": "cosine to 10%",
                   "optimizer": "AdamW(betas=(0.9, 0.99))", "grad_clip": recipe.grad_clip, "seed": args.seed},
        "val_bpc": round(val_bpc, 4),
        "test_bpc": round(test_bpc, 4),
        "train_seconds": round(seconds, 1),
        "threads": args.threads,
        "text": {"file": text_path.name, "sha256": sha256(text_path), "samples": args.samples,
                 "chars_per_sample": args.sample_chars, "prompt_chars": 32, "temperature": 1.0},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "command": "python scripts/train_lm_teacher.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    (out / "lm_teacher.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
