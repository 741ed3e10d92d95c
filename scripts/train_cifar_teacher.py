"""Train the CIFAR-10 teacher that ships with kdcourse (``kdcourse/assets/cifar10_teacher.pt``).

What it trains
    ``kdcourse.models.CifarResNet(widths=(32, 64, 128), blocks=2)``: a CIFAR-style ResNet with
    three stages of two basic blocks (about 0.70 M parameters, a 2.8 MB float32 checkpoint).

Data
    The full CIFAR-10 training set (50,000 images) through ``kdcourse.data.load_cifar10_data``
    (set ``KDCOURSE_CIFAR10`` to an offline archive, or let torchvision download it), normalised
    with the usual per-channel mean/std. Evaluated once, at the end, on the 10,000 test images.

Augmentation (applied to whole batches of tensors on the training device, no DataLoader)
    random crop 32x32 from the image zero-padded by 4 pixels on each side (the padding is 0
    after normalisation, i.e. the mean colour), then a horizontal flip with probability 1/2.

Optimisation
    SGD with Nesterov momentum 0.9, weight decay 5e-4, batch 512, the one-cycle learning-rate
    schedule (``OneCycleLR``, peak 0.2, 15 % warm-up, cosine annealing) over ``--epochs`` epochs
    (default 30), cross-entropy *without* label smoothing: label smoothing erases the
    similarity structure of a teacher's logits that distillation relies on (Mueller, Kornblith
    & Hinton 2019, "When does label smoothing help?"). On a GPU the forward/backward passes run
    under bfloat16 autocast (mixed precision) in channels-last memory format; the reported test
    accuracy is measured in float32. Seed 0 by default (``torch.manual_seed`` for the weights,
    the batch order and the augmentation); on a GPU, cuDNN's autotuned kernels make reruns close
    but not bit-identical.

Outputs (in ``--out-dir``, default ``kdcourse/assets``; ``--name`` sets the file stem, default
``cifar10_teacher``, and ``cifar10_teacher_short`` for the weak teacher)
    - ``cifar10_teacher.pt``: a plain ``state_dict`` (float32, CPU tensors), loadable with
      ``torch.load(path, weights_only=True)``; load it with
      ``kdcourse.teachers.load_cifar10_teacher()``;
    - ``cifar10_teacher.json``: the sidecar recording the architecture keyword arguments,
      parameter count, epochs, batch size, optimiser and schedule, augmentation, seed, test
      accuracy, training seconds, the machine (GPU name, torch / torchvision / CUDA versions)
      and the checkpoint's SHA-256. ``kdcourse/teachers.py`` also hard-codes that digest
      (``CIFAR10_TEACHER_SHA256``, ``CIFAR10_WEAK_TEACHER_SHA256``): after retraining into the
      package's assets, update it (and re-run ``scripts/cifar10_teacher_logits.py``).

``--max-seconds`` caps training time: after a short timing probe the number of epochs is
lowered so that training fits (the sidecar records the epochs actually used).

Usage (the shipped teachers; see their sidecars for the machine and numbers)::

    KDCOURSE_CIFAR10=/path/to/cifar10-jpeg.tar.gz python scripts/train_cifar_teacher.py --epochs 60
    # the weak teacher of lesson 08c: the same network and recipe on a 3-epoch schedule
    KDCOURSE_CIFAR10=/path/to/cifar10-jpeg.tar.gz python scripts/train_cifar_teacher.py \
        --epochs 3 --batch-size 256 --name cifar10_teacher_short

A CPU smoke test (a minute): ``python scripts/train_cifar_teacher.py --epochs 1
--train-size 2000 --test-size 1000 --out-dir /tmp/teacher``.

``--recipe fast`` trains a different network for a strong teacher in seconds on a GPU (issue 13):
``kdcourse.models.CifarSpeedNet`` (about 1.97 M parameters, an 8 MB checkpoint) with a whitened 2x2
stem, SGD with Nesterov momentum 0.85 on the summed loss, 10 epochs at batch 1,024, a linear warm-up
and decay, translations and alternating flips, no label smoothing (see :func:`train_fast`); the
sidecar records the plain accuracy (``test_accuracy``, what a lesson's forward pass gets) and the
accuracy with test-time flips. It writes ``cifar10_teacher_fast.pt`` and ``.json`` (not shipped yet:
it awaits a GPU run)::

    KDCOURSE_CIFAR10=/path/to/cifar10-jpeg.tar.gz python scripts/train_cifar_teacher.py --recipe fast --compile
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

from kdcourse.data import CIFAR10_MEAN, CIFAR10_STD, load_cifar10_data  # noqa: E402
from kdcourse.models import CifarResNet, CifarSpeedNet, count_parameters, whiten_stem_  # noqa: E402

ARCH = {"widths": [32, 64, 128], "blocks": 2, "num_classes": 10}
FAST_ARCH = {"widths": [64, 256, 256], "num_classes": 10}


def _random_crops(x: torch.Tensor, generator: torch.Generator, pad: int, mode: str) -> torch.Tensor:
    """A random ``H x W`` crop of each image of ``x`` padded by ``pad`` pixels (``mode`` of ``F.pad``)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel-padded crop and horizontal flip of a batch ``(B, C, H, W)``, on its device."""
    out = _random_crops(x, generator, pad, "constant")
    flip = torch.rand(len(x), device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


@torch.no_grad()
def evaluate(model, x, y, batch_size=1000, flips: bool = False) -> float:
    """Test accuracy; ``flips=True`` scores the sum of the logits of each image and its mirror image."""
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        xb = x[i : i + batch_size]
        if xb.device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        logits = model(xb) + model(xb.flip(3)) if flips else model(xb)
        correct += (logits.argmax(1) == y[i : i + batch_size]).sum().item()
    return correct / len(y)


# ------------------------------------------------------------------ the fast recipe (--recipe fast)


def translate_flip(x: torch.Tensor, flip_mask: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translations by up to ``pad`` pixels (reflect padding) and a flip of the rows in ``flip_mask``."""
    out = _random_crops(x, generator, pad, "reflect")
    return torch.where(flip_mask[:, None, None, None], out.flip(3), out)


def train_fast(args, x_train, y_train, device) -> tuple[torch.nn.Module, dict, float, int]:
    """The fast teacher: ``CifarSpeedNet`` with a whitened stem, SGD with Nesterov momentum 0.85 on
    the summed loss, a linear warm-up and decay of the learning rate, biases at 64x the rate, BatchNorm
    weights fixed at 1, translations of up to 2 px and *alternating* flips (an image is mirrored in
    every other epoch, so both views are seen equally often), no label smoothing by default.

    The ideas are those of Jordan (2024, airbench); the code and the parametrisation are ours.
    Returns ``(model, recipe, train_seconds, epochs)``.
    """
    cuda = device.type == "cuda"
    model = CifarSpeedNet(FAST_ARCH["widths"], FAST_ARCH["num_classes"])
    whiten_stem_(model, x_train[:5000].cpu().float())
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum, module.eps = 0.4, 1e-12
            module.weight.requires_grad_(False)
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    momentum, batch_size = 0.85, args.batch_size
    kilostep = 1024 * (1 + 1 / (1 - momentum))  # the summed loss's scale: lr and decay per 1,024 images
    lr, wd = args.lr / kilostep, args.weight_decay * batch_size / kilostep
    weights = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    biases = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": weights, "lr": lr, "weight_decay": wd},
                                 {"params": biases, "lr": lr * 64, "weight_decay": wd / 64}],
                                momentum=momentum, nesterov=True)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    steps_per_epoch = len(y_train) // batch_size  # the last partial batch is dropped
    epochs = args.epochs
    total_steps = epochs * steps_per_epoch
    warmup = int(0.23 * total_steps)

    def scale(step: int) -> float:  # linear from 0.2 up to 1 over the warm-up, then down to 0.07
        if step < warmup:
            return 0.2 + 0.8 * step / max(warmup, 1)
        return 1.0 - 0.93 * (step - warmup) / max(total_steps - warmup, 1)

    generator = torch.Generator(device=device).manual_seed(args.seed)
    flip_first = torch.rand(len(y_train), device=device, generator=generator) < 0.5
    model_step = model
    if args.compile:
        model_step = torch.compile(model)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    step = 0
    for epoch in range(epochs):
        model.train()
        flips = flip_first ^ bool(epoch % 2)  # alternating flips: the other half mirrored each epoch
        order = torch.randperm(len(y_train), device=device, generator=generator)
        total = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb = translate_flip(x_train[idx], flips[idx], generator)
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(model_step(xb), y_train[idx], label_smoothing=args.label_smoothing,
                                       reduction="sum")
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * scale(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            step += 1
        if epoch == 0 or epoch == epochs - 1:
            print(f"epoch {epoch + 1:3d}/{epochs}  loss {total.item() / (steps_per_epoch * batch_size):.4f}  "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    recipe = {
        "optimizer": {"name": "SGD", "momentum": momentum, "nesterov": True, "loss_reduction": "sum",
                      "lr_per_1024_images": args.lr, "weight_decay": args.weight_decay, "bias_lr_scale": 64,
                      "batchnorm_weights": "fixed at 1", "batchnorm_momentum": 0.4},
        "schedule": {"name": "linear warm-up 0.2 -> 1 over 23 % of the steps, then linear decay to 0.07"},
        "augmentation": ["random translation by up to 2 px (reflect padding)",
                         "alternating horizontal flips (each image mirrored in every other epoch)"],
        "initialisation": "2x2 whitening stem from 5,000 training images (frozen weights), dirac convolutions",
        "compiled": bool(args.compile),
    }
    return model, recipe, seconds, epochs


def _machine(device) -> dict:
    cuda = device.type == "cuda"
    return {"device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "cuda": torch.version.cuda if cuda else None, "python": platform.python_version()}


def _finish_fast(args, x_train, y_train, x_test, y_test, device, checkpoint_name, sidecar_name, argv) -> dict:
    model, recipe, train_seconds, epochs = train_fast(args, x_train, y_train, device)
    model = model.to(memory_format=torch.contiguous_format)
    test_accuracy, tta_accuracy = evaluate(model, x_test, y_test), evaluate(model, x_test, y_test, flips=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out_dir / checkpoint_name
    torch.save(state, checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    info = {
        "model": "kdcourse.models.CifarSpeedNet", "architecture": FAST_ARCH,
        "parameters": count_parameters(model), "checkpoint": checkpoint_name,
        "checkpoint_bytes": checkpoint.stat().st_size, "sha256": digest, "dataset": "CIFAR-10",
        "train_images": len(y_train), "test_images": len(y_test),
        "normalization": {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)},
        "test_accuracy": round(test_accuracy, 4),  # what the lessons get: one plain forward pass
        "test_accuracy_with_flips": round(tta_accuracy, 4),  # test-time flips, as airbench reports
        "epochs": epochs, "batch_size": args.batch_size, **recipe,
        "loss": {"name": "cross_entropy", "label_smoothing": args.label_smoothing},
        "mixed_precision": "bfloat16 autocast, channels_last" if device.type == "cuda" else "none (float32)",
        "seed": args.seed, "train_seconds": round(train_seconds, 2), "machine": _machine(device),
        "command": "python scripts/train_cifar_teacher.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    (args.out_dir / sidecar_name).write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    print(f"wrote {checkpoint} ({info['checkpoint_bytes']} bytes, sha256 {digest})")
    return info


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", choices=("resnet", "fast"), default="resnet",
                        help="resnet: the shipped CifarResNet teachers; fast: CifarSpeedNet, a strong teacher "
                             "in seconds on a GPU (its defaults: 10 epochs, batch 1024, lr 11.5, decay 0.0153)")
    parser.add_argument("--epochs", type=int, default=None, help="default 30 (resnet) or 10 (fast)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 512 (resnet) or 1024 (fast)")
    parser.add_argument("--lr", type=float, default=None,
                        help="resnet: peak of the one cycle (default 0.2); fast: per 1,024 images of the summed "
                             "loss (default 11.5)")
    parser.add_argument("--weight-decay", type=float, default=None, help="default 5e-4 (resnet) or 0.0153 (fast)")
    parser.add_argument("--compile", action="store_true", help="fast recipe: torch.compile the network")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=None, help="a stratified subset (smoke tests)")
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None, help="lower the epochs to fit this")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "kdcourse" / "assets")
    parser.add_argument("--name", default="cifar10_teacher",
                        help="file stem of the checkpoint and its sidecar (cifar10_teacher_short: the weak teacher)")
    args = parser.parse_args(argv)
    fast = args.recipe == "fast"
    for key, resnet_default, fast_default in (("epochs", 30, 10), ("batch_size", 512, 1024), ("lr", 0.2, 11.5),
                                              ("weight_decay", 5e-4, 0.0153)):
        if getattr(args, key) is None:
            setattr(args, key, fast_default if fast else resnet_default)
    if fast and args.name == "cifar10_teacher":
        args.name = "cifar10_teacher_fast"
    checkpoint_name, sidecar_name = f"{args.name}.pt", f"{args.name}.json"

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(args.seed)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    start = time.perf_counter()
    splits = load_cifar10_data(train_size=args.train_size, test_size=args.test_size, seed=args.seed)
    x_train, y_train = (t.to(device) for t in splits.train.tensors)
    x_test, y_test = (t.to(device) for t in splits.test.tensors)
    print(f"data: {len(y_train)} train / {len(y_test)} test images on {device} "
          f"({time.perf_counter() - start:.1f} s)", flush=True)

    if fast:
        return _finish_fast(args, x_train, y_train, x_test, y_test, device, checkpoint_name, sidecar_name, argv)
    model = CifarResNet(widths=ARCH["widths"], blocks=ARCH["blocks"], num_classes=ARCH["num_classes"])
    n_params = count_parameters(model)
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    # no weight decay on BatchNorm parameters and biases (a common, harmless refinement)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]

    def make_optimizer():
        return torch.optim.SGD(
            [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=args.lr, momentum=0.9, nesterov=True,
        )

    optimizer = make_optimizer()
    generator = torch.Generator(device=device).manual_seed(args.seed)
    steps_per_epoch = math.ceil(len(y_train) / args.batch_size)

    def train_step(xb, yb, scheduler=None):
        xb = augment(xb, generator)
        if cuda:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(xb), yb, label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return loss

    epochs = args.epochs
    if args.max_seconds is not None:
        # timing probe on a copy of the initial state (weights and optimiser restored afterwards)
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        probe_steps = min(30, steps_per_epoch)
        model.train()
        for i in range(5 + probe_steps):
            if i == 5:
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            idx = torch.randint(0, len(y_train), (args.batch_size,), device=device, generator=generator)
            train_step(x_train[idx], y_train[idx])
        if cuda:
            torch.cuda.synchronize()
        epoch_seconds = (time.perf_counter() - t0) / probe_steps * steps_per_epoch
        fits = max(1, int(args.max_seconds / (epoch_seconds * 1.1)))
        epochs = min(args.epochs, fits)
        print(f"probe: about {epoch_seconds:.2f} s per epoch -> {epochs} epochs", flush=True)
        model.load_state_dict(saved)
        optimizer = make_optimizer()
        generator.manual_seed(args.seed)

    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
        pct_start=0.15, anneal_strategy="cos", div_factor=10.0, final_div_factor=1000.0,
    )
    if cuda:
        torch.cuda.synchronize()
    train_start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), device=device, generator=generator)
        total = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            total += train_step(x_train[idx], y_train[idx], scheduler).detach()
        if epoch % 5 == 4 or epoch == epochs - 1:
            acc = evaluate(model, x_test, y_test)
            print(f"epoch {epoch + 1:3d}/{epochs}  loss {total.item() / steps_per_epoch:.4f}  "
                  f"test acc {acc:.4f}  ({time.perf_counter() - train_start:.0f} s)", flush=True)
    if cuda:
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - train_start

    # final float32 evaluation and the CPU, float32, contiguous checkpoint
    model = model.to(memory_format=torch.contiguous_format)
    test_accuracy = evaluate(model, x_test, y_test)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out_dir / checkpoint_name
    torch.save(state, checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()

    info = {
        "model": "kdcourse.models.CifarResNet",
        "architecture": ARCH,
        "parameters": n_params,
        "checkpoint": checkpoint_name,
        "checkpoint_bytes": checkpoint.stat().st_size,
        "sha256": digest,
        "dataset": "CIFAR-10",
        "train_images": len(y_train),
        "test_images": len(y_test),
        "normalization": {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)},
        "test_accuracy": round(test_accuracy, 4),
        "epochs": epochs,
        "batch_size": args.batch_size,
        "optimizer": {"name": "SGD", "momentum": 0.9, "nesterov": True, "weight_decay": args.weight_decay,
                      "weight_decay_on_bn_and_bias": False},
        "schedule": {"name": "OneCycleLR", "max_lr": args.lr, "pct_start": 0.15, "anneal": "cos",
                     "div_factor": 10.0, "final_div_factor": 1000.0},
        "loss": {"name": "cross_entropy", "label_smoothing": args.label_smoothing},
        "augmentation": ["random crop 32x32 after zero padding of 4 px", "horizontal flip p=0.5"],
        "mixed_precision": "bfloat16 autocast, channels_last" if cuda else "none (float32)",
        "seed": args.seed,
        "train_seconds": round(train_seconds, 1),
        "machine": {
            "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "cuda": torch.version.cuda if cuda else None,
            "python": platform.python_version(),
        },
        "command": "python scripts/train_cifar_teacher.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    (args.out_dir / sidecar_name).write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    print(f"wrote {checkpoint} ({info['checkpoint_bytes']} bytes, sha256 {digest}); "
          f"if it replaces the shipped teacher, set CIFAR10_TEACHER_SHA256 in kdcourse/teachers.py")
    return info


if __name__ == "__main__":
    main()
