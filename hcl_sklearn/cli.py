"""The ``hcl`` command line."""

import argparse
import logging
import sys

from ._version import __version__


def _demo(args):
    """Smoke run until the end-to-end pipeline lands: load the real genotypes and summarise."""
    import numpy as np

    from .datasets import get_1000g_chr22
    from .volumes import PairedVolumes

    rng = np.random.default_rng(0)
    X = rng.random((4, 2, 16, 20, 16)).astype("float32")
    ds = PairedVolumes(X, target_shape=(16, 24, 16), downsample=2)
    print(f"hcl-sklearn {__version__}")
    print(f"paired volumes: {ds}")
    prefix = get_1000g_chr22()
    n = sum(1 for _ in open(prefix + ".fam"))
    m = sum(1 for _ in open(prefix + ".bim"))
    print(f"real genotypes: 1000 Genomes EUR chr22, {n} samples x {m} SNPs")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="hcl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hcl-sklearn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on error")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the embedded demo")
    p.set_defaults(func=_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if not args.debug else logging.DEBUG,
                        format="%(message)s")
    try:
        return args.func(args)
    except Exception as exc:  # one clear line unless --debug
        if args.debug:
            raise
        print(f"hcl {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
