"""The ``mosaicrec`` command line.

Every sub-command is a module in :mod:`mosaicrec.commands` that defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules are discovered, so adding a command
is adding a file. Heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import mosaicrec.commands as commands_pkg
from mosaicrec import __version__


class _OverridesAnywhere(argparse.ArgumentParser):
    """Sub-command parser that accepts ``key=value`` overrides anywhere on the line.

    argparse stops collecting positionals at the first option, so ``CONFIG -o OUT k=v`` would
    leave ``k=v`` unrecognised; commands with an ``overrides`` positional get such words added.
    """

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        ns, extra = super().parse_known_args(args, namespace)
        if not hasattr(ns, "overrides"):
            return ns, extra
        stray = [a for a in extra if "=" in a and not a.startswith("-")]
        ns.overrides = [*(ns.overrides or []), *stray]
        return ns, [a for a in extra if a not in stray]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mosaicrec", description="Multimodal, cross-domain sequential recommendation.")
    parser.add_argument("--version", action="version", version=f"mosaicrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OverridesAnywhere)
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"mosaicrec.commands.{info.name}")
        p = sub.add_parser(info.name.replace("_", "-"), help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError) as e:
        # Configuration and data errors carry messages naming the file and record.
        if getattr(args, "debug", False):
            raise
        print(f"mosaicrec {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
