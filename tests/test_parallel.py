"""Data-parallel training (kdcourse.parallel): two Gloo processes against one process, and the torchrun CLI.

Two processes are spawned once for the module (torch.multiprocessing, a file rendezvous, so that
parallel pytest workers never share a port); each trains the same runs as one process does here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kdcourse import parallel
from kdcourse.data import load_digits_data, subset
from kdcourse.distill import seed_everything, train
from kdcourse.models import MLP, DigitsCNN

# 193 = 3 x 64 + 1: the last global batch holds one example, so one rank's slice of it is empty
TRAIN_SIZE, VAL_SIZE, EPOCHS = 193, 90, 2

# One process against two, on the MLP (no BatchNorm): the same examples in every step, and the
# gradient of a 64-row mean against the average of two 32-row means differs by float rounding
# only; Adam carries such differences along. Measured on this machine after 2 epochs: the loss
# history and its CE part agree to 1e-7 (relative), the KD part to 5e-6 (with an untrained
# teacher it is a small KL between two near-uniform distributions, a difference of near-equal
# numbers), the final weights to 4e-8 (absolute, on weights of size 0.1-1). The bounds leave
# 10-25x margin; a real mistake (a rank training on another slice, gradients summed instead of
# averaged, an example counted twice) moves the loss by 1e-3 or more.
LOSS_RTOL, KD_RTOL, WEIGHT_ATOL = 1e-6, 1e-4, 1e-6


def _runs() -> dict[str, tuple[dict, dict]]:
    """The runs every process trains: KD into an MLP (no BatchNorm; one process and two should agree
    closely) and into a CNN with BatchNorm (the ranks must agree with each other exactly)."""
    torch.set_num_threads(1)
    d = load_digits_data(images=True)
    small, val = subset(d.train, TRAIN_SIZE, seed=0), subset(d.val, VAL_SIZE, seed=0)
    out = {}
    for name, make in (("mlp", lambda: MLP(64, (32,))), ("cnn", lambda: DigitsCNN(4))):
        seed_everything(0)
        teacher = MLP(64, (64,))  # untrained and seeded: its logits are targets all the same
        student = make()
        h = train(student, small, teacher=teacher, method="kd", val_data=val, epochs=EPOCHS, batch_size=64,
                  lr=3e-3, seed=0, progress=False, device="cpu")
        out[name] = (h.to_dict(), {k: v.clone() for k, v in student.state_dict().items()})
    return out


def _worker(rank: int, world: int, rendezvous: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        assert parallel.world_size() == world and parallel.rank() == rank
        torch.save(_runs(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, str(tmp / "rendezvous"), str(tmp)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(scope="module")
def one_process():
    return _runs()


def test_both_ranks_end_with_the_same_history_and_weights(two_ranks):
    first, second = two_ranks
    for name in ("mlp", "cnn"):
        (h0, w0), (h1, w1) = first[name], second[name]
        assert h0 == h1, name  # loss, parts, accuracies and (the slowest rank's) seconds
        for key in w0:  # the CNN's BatchNorm running statistics too (averaged over the ranks)
            assert torch.equal(w0[key], w1[key]), (name, key)


def test_two_ranks_train_as_one_process_within_rounding(two_ranks, one_process):
    (h2, w2), (h1, w1) = two_ranks[0]["mlp"], one_process["mlp"]
    assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=LOSS_RTOL)
    assert h2["parts"]["ce"] == pytest.approx(h1["parts"]["ce"], rel=LOSS_RTOL)
    assert h2["parts"]["kd"] == pytest.approx(h1["parts"]["kd"], rel=KD_RTOL)
    # accuracies: the same predictions (one flipped example allowed: an arg-max at a near-tie)
    assert h2["train_acc"] == pytest.approx(h1["train_acc"], abs=1.01 / TRAIN_SIZE)
    assert h2["val_acc"] == pytest.approx(h1["val_acc"], abs=1.01 / VAL_SIZE)
    for key in w1:
        assert torch.allclose(w2[key], w1[key], rtol=0, atol=WEIGHT_ATOL), key


def test_outside_torchrun_nothing_is_split():
    assert not dist.is_initialized() and parallel.world_size() == 1 and parallel.is_main()
    assert parallel.shard_bounds(7) == (0, 7)
    x = torch.ones(3)
    assert parallel.sum_over_ranks(x) is x


def test_slices_cover_a_batch_once(monkeypatch):
    for world in (2, 3, 4):
        for n in (0, 1, 5, 64, 65):
            bounds = []
            for r in range(world):
                monkeypatch.setattr(parallel, "world_size", lambda world=world: world)
                monkeypatch.setattr(parallel, "rank", lambda r=r: r)
                bounds.append(parallel.shard_bounds(n))
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1


def test_torchrun_compare_prints_one_table(tmp_path):
    """The README's command, with 2 student epochs instead of 60 (the teacher trains as usual)."""
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "kdcourse", "compare", "--dataset", "digits", "--methods", "baseline,kd", "--seeds", "1",
               "--epochs", "2", "--quiet", "--json", str(out)]
    env = {**os.environ, "KDCOURSE_PROGRESS": "0"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("test accuracy") == 1, done.stdout  # rank 0 alone prints
    assert "data-parallel on 2 processes" in done.stdout
    results = json.loads(out.read_text())
    assert set(results) == {"teacher", "baseline", "kd"}
    assert results["teacher"]["mean"] > 0.9  # the teacher trained data-parallel, 15 epochs as always
