"""rnnfast's command line.  Each command lives in a small function; the
library itself never prints, only this module does."""
import argparse
import sys


def cmd_info(args):
    from ._info import show_config
    show_config()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="rnnfast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="version, BLAS library and kernel, build flags")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
