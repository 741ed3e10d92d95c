"""Training on several processes at once: ``torchrun --nproc_per_node=N`` and data parallelism.

torchrun starts the same command ``N`` times, one process (a *rank*) per GPU or per group of CPU
cores, and tells each its place in environment variables (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`init_from_env` joins them into one
process group: NCCL between GPUs, Gloo between CPUs. From then on :func:`kdcourse.distill.train`
trains data-parallel by itself:

- every rank holds the whole model and the whole training set, and draws the same seeded batch
  order, so global batch ``i`` is the same set of examples whatever ``N`` is; each rank computes
  the loss on its own slice of that batch (:func:`shard_bounds`, sizes differing by one at most);
- ``DistributedDataParallel`` (:func:`wrap`) averages the gradients, so every rank takes the same
  optimizer step and the weights stay identical; ``batch_size`` stays the *global* batch (one
  optimizer step), so the learning rate needs no change;
- the epoch's sums (loss, parts, correct and labelled counts) are added over the ranks
  (:func:`sum_over_ranks`) and the validation set is split between them, so every rank's
  ``History`` holds the same numbers.

BatchNorm normalises with each rank's own slice (its batch statistics come from ``batch_size / N``
examples, as ``DistributedDataParallel`` does unless the model uses ``nn.SyncBatchNorm``); the
running statistics are averaged over the ranks at the end of each epoch (:func:`average_buffers`),
so every rank evaluates the same model. Losses over the relations within a batch (RKD, SP) see
the pairs within one slice only, and on a transfer set the cross-entropy's mean over labelled
rows is a mean over each slice's labelled rows. So a run on ``N`` ranks matches one process
closely (to float rounding, ``tests/test_parallel.py``) for models without BatchNorm and losses
that are means over the rows, and differs a little otherwise, as a smaller batch would.

Without torchrun (``WORLD_SIZE`` unset or 1) nothing here changes anything: :func:`world_size`
is 1 and the training loop is the one-process loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "launched_by_torchrun",
    "backend",
    "init_from_env",
    "teardown",
    "world_size",
    "rank",
    "is_main",
    "print0",
    "shard_bounds",
    "sum_over_ranks",
    "max_over_ranks",
    "check_same_on_every_rank",
    "average_buffers",
    "wrap",
    "own_random_streams",
]


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun started (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend() -> str:
    """The process group's backend: Gloo for CPU tensors, plus NCCL for CUDA tensors on a GPU machine.

    Both at once (``"cpu:gloo,cuda:nccl"``) on a GPU machine, because the quick profile trains on
    the CPU even there (:func:`kdcourse.config.device`).
    """
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def init_from_env() -> bool:
    """Join the process group torchrun describes; return whether this process is one of several.

    Does nothing (and returns ``False``) without torchrun or with ``--nproc_per_node=1``. On a GPU
    machine each rank takes the GPU ``LOCAL_RANK``, so ``"cuda"`` means that rank's own GPU.
    """
    if not launched_by_torchrun():
        return False
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed: run without torchrun, or install "
                           "a build that has it (the wheels from pytorch.org do)")
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend())
    return True


def teardown() -> None:
    """Leave the process group (at the end of a torchrun command); nothing without one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """The number of processes training together (1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's number, 0 to ``world_size() - 1`` (0 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def is_main() -> bool:
    """Whether this process prints and writes files (rank 0; the only process without torchrun)."""
    return rank() == 0


def print0(*args, **kwargs) -> None:
    """``print`` on rank 0 only, so that a table appears once and not once per process."""
    if is_main():
        print(*args, **kwargs)


def shard_bounds(n: int) -> tuple[int, int]:
    """This rank's slice ``[lo, hi)`` of ``n`` rows: contiguous, sizes differing by one at most.

    The first ``n % N`` ranks take one row more (as ``torch.tensor_split``). With fewer rows than
    ranks some slices are empty (``lo == hi``).
    """
    size, r = world_size(), rank()
    base, extra = divmod(n, size)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


def _reduced(values: torch.Tensor, op) -> torch.Tensor:
    if world_size() == 1:
        return values
    out = values.clone()
    dist.all_reduce(out, op=op)
    return out


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` added over every rank (a new tensor; ``values`` itself without a process group)."""
    return _reduced(values, dist.ReduceOp.SUM)


def max_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise largest of ``values`` over every rank (e.g. the slowest rank's seconds)."""
    return _reduced(values, dist.ReduceOp.MAX)


def check_same_on_every_rank(settings: dict[str, float], device: torch.device | str = "cpu") -> None:
    """Raise ``ValueError`` on every rank when the ranks disagree about one of ``settings``.

    Each rank must train on the same data with the same settings: one whose data or number of
    steps differs would silently train on a mixture, or wait forever for the others.
    """
    if world_size() == 1:
        return
    values = torch.tensor(list(settings.values()), dtype=torch.float64, device=device)
    low, high = -max_over_ranks(-values), max_over_ranks(values)
    differ = [name for name, lo, hi in zip(settings, low.tolist(), high.tolist()) if lo != hi]
    if differ:
        raise ValueError(f"the {world_size()} processes differ in {', '.join(differ)}: each must build the same "
                         "training set with the same settings (torchrun runs one command N times; give "
                         "everything random in it a seed)")


@torch.no_grad()
def average_buffers(module: nn.Module) -> None:
    """Replace every floating-point buffer (BatchNorm's running mean and variance) by its mean over the ranks.

    Each rank's running statistics follow its own slices of the batches; averaged they summarise
    every rank's data, and every rank then evaluates the same model. Integer buffers (BatchNorm's
    step count) are the same on every rank already.
    """
    size = world_size()
    if size == 1:
        return
    for buffer in module.buffers():
        if torch.is_floating_point(buffer):
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(size)


def wrap(module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
    """``module`` inside ``DistributedDataParallel``: call the wrapper for the forward pass, and the
    backward that follows averages the gradients of its parameters over the ranks.

    ``DistributedDataParallel`` rather than an all-reduce of each gradient after ``backward()``: it
    sends buckets of gradients while the backward pass is still running (communication overlaps
    computation), it starts every rank from rank 0's weights, and it is what real multi-GPU code
    uses. ``broadcast_buffers=False``: BatchNorm's running statistics are averaged at the end of
    each epoch (:func:`average_buffers`) instead of being overwritten by rank 0's at every step.
    ``find_unused_parameters``: some trainable parameters get no gradient in a step (a loss term of
    weight 0 with its own regressor).
    """
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # PyTorch >= 2.12 names the option forward_sync_buffers (buffers are still synced once, at the start)
    sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters \
        else "broadcast_buffers"
    return DistributedDataParallel(module, find_unused_parameters=find_unused_parameters, **{sync: False})


@contextmanager
def own_random_streams(seed: int, device: torch.device) -> Iterator[None]:
    """Inside, each rank draws its own dropout masks and augmentations; afterwards every rank's
    generator is back where it was (the same on every rank). Without a process group: nothing.

    Seeded like every run, but by ``seed`` and the rank: with one stream on every rank, rank 1's
    slice of each batch would get the same masks and crops as rank 0's.
    """
    if world_size() == 1:
        yield
        return
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + 1_000_003 * rank())
        yield
