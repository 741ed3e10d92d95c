"""Command line: ``python -m kdcourse compare ...``, ``methods``, ``cache-benchmark``, ``grade NOTEBOOK...``
(:mod:`kdcourse.grade`) and ``nbgrader-export OUTDIR`` (:mod:`kdcourse.nbgrader_export`).

``compare`` also runs under ``torchrun --nproc_per_node=N -m kdcourse compare ...``: every training
is then data-parallel over the N processes (:mod:`kdcourse.parallel`) and rank 0 alone prints the
table and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import grade, nbgrader_export, parallel
from .distill import METHODS
from .teachers import CIFAR10_TEACHERS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdcourse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    cmp = sub.add_parser("compare", help="train every method over several seeds and print a table")
    cmp.add_argument("--dataset", choices=["digits", "cifar10"], default="digits")
    cmp.add_argument("--methods", default=",".join(m for m in METHODS if m != "pseudo"),
                     help=f"comma-separated, from {', '.join(METHODS)} (sums like kd+at allowed; pseudo: with "
                          "--labeled, the teacher's arg-max on the unlabelled images)")
    cmp.add_argument("--seeds", type=int, default=3)
    cmp.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    cmp.add_argument("--quiet", action="store_true", help="no progress bar")
    cmp.add_argument("--labeled", type=int, default=None, metavar="N",
                     help="a transfer-set study: N labelled training images (methods from baseline, pseudo, kd)")
    cmp.add_argument("--unlabeled", type=int, default=None, metavar="M",
                     help="with --labeled: M unlabelled images the teacher labels (default: 5000 for cifar10, "
                          "the rest of the training set for digits)")
    cmp.add_argument("--pool", choices=["train", "held-out"], default="train",
                     help="with --labeled on cifar10: unlabelled images from the training set (the teacher trained "
                          "on them) or held-out test images it never saw (never used for testing)")
    cmp.add_argument("--epochs", type=int, default=None,
                     help="digits: every student's epochs (default 60, the course's regime); with --labeled: "
                          "epochs of pseudo / kd")
    cmp.add_argument("--baseline-epochs", type=int, default=None,
                     help="with --labeled: epochs of the label-only baseline")
    cmp.add_argument("--student-widths", default=None, metavar="A,B,C",
                     help="with --labeled on cifar10: the student CifarCNN's three widths (default 16,32,64)")
    cmp.add_argument("--teacher", choices=CIFAR10_TEACHERS, default="strong",
                     help="with --labeled on cifar10: the shipped teacher (strong: 88 %%, 60 epochs; weak: the "
                          "same network after 3 epochs)")
    cmp.add_argument("--threads", type=int, default=None,
                     help="PyTorch CPU threads (default: 1 for digits, whose tiny networks run fastest "
                          "on one thread; PyTorch's default for cifar10)")

    sub.add_parser("methods", help="list the distillation methods: loss, default weights, function, paper")

    bench = sub.add_parser("cache-benchmark", help="time a KD epoch with and without cached teacher outputs")
    bench.add_argument("--dataset", choices=["digits", "cifar10"], default="digits",
                       help="digits: cached vs live teacher without augmentation; cifar10 (with --augment): "
                            "the view cache of kdcourse.views vs the live teacher on augmented batches")
    bench.add_argument("--augment", action="store_true",
                       help="augmented training (cifar10 only): baseline and KD on fixed views, KD live")
    bench.add_argument("--epochs", type=int, default=None,
                       help="digits: epochs per run (default 10); cifar10: timed epochs after one warm-up (default 3)")
    bench.add_argument("--repeats", type=int, default=3, help="digits: runs per setting")
    bench.add_argument("--images", type=int, default=500, help="cifar10: training images (a stratified subset)")
    bench.add_argument("--threads", type=int, default=None,
                       help="PyTorch CPU threads (default: 1 for digits; PyTorch's default for cifar10)")

    pat = sub.add_parser("patience", help="CIFAR-10, full profile (a GPU): baseline vs KD at several budgets "
                                          "(patience and consistency, Beyer et al. 2022)")
    pat.add_argument("--budgets", default="30,100,300", metavar="E1,E2,...", help="epochs of each budget")
    pat.add_argument("--seeds", type=int, default=3)
    pat.add_argument("--images", type=int, default=None, metavar="N",
                     help="train on a stratified subset of N images (default: all 50,000)")
    pat.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    pat.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                     help="bfloat16: the students' and the live teacher's forward passes under autocast (a GPU's)")
    pat.add_argument("--channels-last", action="store_true", help="networks and batches channels-last (a GPU's)")
    pat.add_argument("--teacher", choices=CIFAR10_TEACHERS, default="strong",
                     help="the shipped teacher (strong: 88 %%; weak: the same network after 3 epochs, 77 %%)")
    pat.add_argument("--student-widths", default=None, metavar="A,B,C",
                     help="the student CifarCNN's three widths (default 16,32,64, the full profile's)")
    pat.add_argument("--quiet", action="store_true", help="no progress bar")

    grade.add_arguments(sub.add_parser("grade", help="run learners' notebooks and tabulate their checkers' results"))
    nbgrader_export.add_arguments(sub.add_parser("nbgrader-export", help="write the lessons as an nbgrader course"))

    args = parser.parse_args(argv)
    if args.command == "methods":
        from .distill import method_table

        print(method_table())
        return 0
    if args.command == "grade":
        return grade.run(args)
    if args.command == "patience":
        return _patience(args)
    if args.command == "nbgrader-export":
        return nbgrader_export.main(args)
    if args.command == "compare":
        try:
            return _compare(args)
        finally:
            parallel.teardown()
    elif args.command == "cache-benchmark":
        if args.augment != (args.dataset == "cifar10"):
            parser.error("cache-benchmark --augment goes with --dataset cifar10 (the digits benchmark is "
                         "not augmented; the cifar10 one is)")
        threads = args.threads or (1 if args.dataset == "digits" else None)
        if threads:
            import torch

            torch.set_num_threads(threads)
        if args.dataset == "digits":
            from .compare import cache_benchmark

            t = cache_benchmark(epochs=args.epochs or 10, repeats=args.repeats)
            print(json.dumps({k: round(v, 4) for k, v in t.items()}, indent=2))
            print(f"KD epoch / baseline epoch: {t['ratio_cached']:.2f}x with cached teacher outputs, "
                  f"{t['ratio_uncached']:.2f}x without")
        else:
            from .compare import views_benchmark
            from .views import DEFAULT_VIEWS

            try:
                t = views_benchmark(images=args.images, epochs=args.epochs or 3)
            except (ValueError, RuntimeError, FileNotFoundError) as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in t.items()}, indent=2))
            print(f"{DEFAULT_VIEWS.describe()}")
            print(f"KD epoch / baseline epoch (baseline on the same fixed views): {t['ratio_views']:.2f}x "
                  f"with the view cache, {t['ratio_live']:.2f}x with the live teacher on random crop + flip")
            print(f"view cache: {t['view_cache_seconds']:.1f} s once ({t['views']} views x {t['images']} images; "
                  f"not in the epoch times), repaid after {t['break_even_epochs']} epochs vs the live teacher")
    return 0


def _patience(args) -> int:
    """``patience``: the table, and ``--json``."""
    from dataclasses import replace

    from . import capstone
    from .patience import format_patience, patience_study

    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        print(f"error: --budgets takes epochs separated by commas (e.g. 30,100,300), got {args.budgets!r}",
              file=sys.stderr)
        return 2
    changes = {"train_size": args.images} if args.images is not None else {}
    try:
        if args.student_widths is not None:
            changes["student_widths"] = _student_widths(args.student_widths)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    reg = replace(capstone.FULL, precision=args.precision, channels_last=args.channels_last, teacher=args.teacher,
                  **changes)

    def write(result: dict) -> None:  # after every budget: a run cut short keeps what it finished
        if args.json:
            from pathlib import Path

            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")

    try:
        result = patience_study(budgets, seeds=args.seeds, reg=reg, progress=not args.quiet, on_budget=write)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_patience(result))
    return 0


def _compare(args) -> int:
    """``compare``: the table (and ``--json``); under torchrun every process trains, rank 0 reports."""
    parallel.init_from_env()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    threads = args.threads or (1 if args.dataset == "digits" else None)
    if threads:
        import torch

        torch.set_num_threads(threads)
    progress = not args.quiet and parallel.is_main()
    try:
        if args.labeled is not None:
            results = _transfer(args, methods, progress)
            from .compare import format_table, to_json
        elif args.dataset == "digits":
            from dataclasses import replace

            from .compare import DIGITS_REGIME, compare, format_table, to_json

            regime = DIGITS_REGIME if args.epochs is None else replace(DIGITS_REGIME, epochs=args.epochs)
            results = compare(methods, seeds=args.seeds, regime=regime, progress=progress)
        else:
            if args.epochs is not None:
                raise ValueError("--epochs goes with --dataset digits or --labeled; the CIFAR-10 comparison's "
                                 "epochs come from the profile (KDCOURSE_PROFILE)")
            from .capstone import compare_cifar10, format_table, to_json

            results = compare_cifar10(methods, seeds=args.seeds, progress=progress)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        where = f"rank {parallel.rank()}: " if parallel.world_size() > 1 else ""
        print(f"error: {where}{err}", file=sys.stderr)
        return 2
    if parallel.world_size() > 1:
        parallel.print0(f"(trained data-parallel on {parallel.world_size()} processes, "
                        f"backend {parallel.backend()}: kdcourse.parallel)")
    parallel.print0(format_table(results))
    rates = {m: r["images_per_second"] for m, r in results.items() if r.get("images_per_second")}
    if rates:
        parallel.print0("training images per second (the steps of an epoch, mean over the runs): "
                        + ", ".join(f"{m} {v:,.0f}" for m, v in rates.items()))
    for method, r in results.items():
        if "vs_baseline" in r:  # transfer-set studies: the paired per-seed differences
            diffs = ", ".join(f"{100 * d:+.1f}" for d in r["vs_baseline"]["runs"])
            parallel.print0(f"{method} - baseline per seed: {diffs} points "
                            f"(mean {100 * r['vs_baseline']['mean']:+.1f} +- {100 * r['vs_baseline']['std']:.1f})")
    if args.json and parallel.is_main():
        to_json(results, args.json)
        print(f"wrote {args.json}")
    return 0


def _transfer(args, methods: list[str], progress: bool) -> dict:
    from dataclasses import replace

    from .transfer import DIGITS_TRANSFER, FULL, cifar10_transfer_study, digits_transfer_study

    base = DIGITS_TRANSFER if args.dataset == "digits" else FULL
    changes = {"labeled": args.labeled, "pool": args.pool}
    if args.unlabeled is not None:
        changes["unlabeled"] = args.unlabeled
    for name in ("epochs", "baseline_epochs"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.student_widths is not None:
        if args.dataset == "digits":
            raise ValueError("--student-widths sets a CIFAR-10 CifarCNN; the digits student is DigitsCNN(8)")
        changes["student_widths"] = _student_widths(args.student_widths)
    reg = replace(base, **changes)
    parallel.print0(f"transfer set: {reg.describe()}")
    if args.dataset == "digits":
        if args.teacher != "strong":
            raise ValueError("--teacher weak is a CIFAR-10 teacher; the digits have one teacher")
        study = digits_transfer_study(reg, methods, seeds=args.seeds, progress=progress)
    else:
        study = cifar10_transfer_study(reg, methods, seeds=args.seeds, progress=progress, teacher=args.teacher)
    return study.results


def _student_widths(text: str) -> tuple[int, int, int]:
    """``--student-widths A,B,C``: the CIFAR-10 student ``CifarCNN``'s three widths."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"--student-widths takes three positive integers like 16,32,64, got {text!r}")
    return widths


if __name__ == "__main__":
    sys.exit(main())
