"""Compute the shipped CIFAR-10 teacher's logits on every CIFAR-10 image, for kdcourse/assets.

    KDCOURSE_CIFAR10=../shared/data/cifar10-jpeg.tar.gz python scripts/cifar10_teacher_logits.py
    KDCOURSE_CIFAR10=../shared/data/cifar10-jpeg.tar.gz python scripts/cifar10_teacher_logits.py --teacher weak

Writes ``kdcourse/assets/cifar10_teacher_logits.npz`` (``--teacher weak``:
``cifar10_teacher_short_logits.npz``; float32 logits of the 50,000 training
and 10,000 test images, in the loader's order) and its ``.json`` sidecar: the teacher's SHA-256,
the SHA-256 of the decoded images they were computed on (:func:`kdcourse.data.arrays_sha256`)
and the file's own SHA-256. The teacher's forward pass is the expensive part of lesson 08 on a
CPU (about 7 ms per image on one thread); with these logits a lesson run on the same copy of
CIFAR-10 needs none. Another copy (the official python batches are not the JPEG re-encoding)
has another digest, and then the lessons compute the logits themselves and cache them on disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from kdcourse import data as kd_data
from kdcourse.distill import predict_logits
from kdcourse.teachers import CIFAR10_TEACHERS, _cifar_asset, cifar10_teacher_info, load_cifar10_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", choices=CIFAR10_TEACHERS, default="strong", help="which shipped teacher")
    parser.add_argument("--out", type=Path, default=None, help="default: the package's file for that teacher")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    args.out = args.out or _cifar_asset(args.teacher)[2]

    start = time.perf_counter()
    d = kd_data.load_cifar10_data()
    teacher = load_cifar10_teacher(which=args.teacher)
    logits = {split: predict_logits(teacher, getattr(d, split).tensors[0], args.batch_size).numpy()
              for split in ("train", "test")}
    seconds = time.perf_counter() - start
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, train=logits["train"].astype(np.float32), test=logits["test"].astype(np.float32))
    tmp.replace(args.out)
    sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    accuracy = {split: float((logits[split].argmax(1) == getattr(d, split).tensors[1].numpy()).mean())
                for split in ("train", "test")}
    sidecar = {
        "file": args.out.name, "sha256": sha, "teacher_sha256": cifar10_teacher_info(which=args.teacher)["sha256"],
        "data_sha256": d.source_sha256, "shapes": {k: list(v.shape) for k, v in logits.items()},
        "teacher_accuracy": accuracy, "seconds": round(seconds, 1), "threads": torch.get_num_threads(),
        "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__},
        "command": f"python scripts/cifar10_teacher_logits.py --teacher {args.teacher}",
    }
    args.out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    print(json.dumps(sidecar, indent=2))


if __name__ == "__main__":
    main()
