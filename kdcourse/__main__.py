"""Command line: ``python -m kdcourse compare ...`` and ``python -m kdcourse cache-benchmark``."""

from __future__ import annotations

import argparse
import json
import sys

from .distill import METHODS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdcourse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    cmp = sub.add_parser("compare", help="train every method over several seeds and print a table")
    cmp.add_argument("--dataset", choices=["digits", "cifar10"], default="digits")
    cmp.add_argument("--methods", default=",".join(METHODS),
                     help=f"comma-separated, from {', '.join(METHODS)} (sums like kd+at allowed)")
    cmp.add_argument("--seeds", type=int, default=3)
    cmp.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    cmp.add_argument("--quiet", action="store_true", help="no progress bar")
    cmp.add_argument("--threads", type=int, default=None,
                     help="PyTorch CPU threads (default: 1 for digits, whose tiny networks run fastest "
                          "on one thread; PyTorch's default for cifar10)")

    bench = sub.add_parser("cache-benchmark", help="time a KD epoch with and without cached teacher outputs")
    bench.add_argument("--epochs", type=int, default=10)
    bench.add_argument("--repeats", type=int, default=3)

    args = parser.parse_args(argv)
    if args.command == "compare":
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        threads = args.threads or (1 if args.dataset == "digits" else None)
        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            if args.dataset == "digits":
                from .compare import compare, format_table, to_json

                results = compare(methods, seeds=args.seeds, progress=not args.quiet)
            else:
                from .capstone import compare_cifar10, format_table, to_json

                results = compare_cifar10(methods, seeds=args.seeds, progress=not args.quiet)
        except (ValueError, RuntimeError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(format_table(results))
        if args.json:
            to_json(results, args.json)
            print(f"wrote {args.json}")
    elif args.command == "cache-benchmark":
        from .compare import cache_benchmark

        t = cache_benchmark(epochs=args.epochs, repeats=args.repeats)
        print(json.dumps({k: round(v, 4) for k, v in t.items()}, indent=2))
        print(f"KD epoch / baseline epoch: {t['ratio_cached']:.2f}x with cached teacher outputs, "
              f"{t['ratio_uncached']:.2f}x without")
    return 0


if __name__ == "__main__":
    sys.exit(main())
