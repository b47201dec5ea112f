"""``audiokit`` command line: one argparse subcommand per module of this package.

A module ``audiokit/cli/<name>.py`` that defines ``add_parser(subparsers) -> ArgumentParser`` and
``run(args) -> int`` is a subcommand (found automatically; helper modules define neither).
Errors a user can fix (AudiokitError, OSError) end as one ``error: ...`` line and exit status 1. SIGTERM ends a
command as Ctrl-C does (temporary files deleted, outputs completed where the command does that) with status 143.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
import threading

import audiokit
from audiokit.errors import AudiokitError, one_line


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand module's parser; ``args.run`` is its ``run``."""
    parser = argparse.ArgumentParser(prog="audiokit", description="Speech enhancement, separation and evaluation.")
    parser.add_argument("--version", action="version", version=f"audiokit {audiokit.__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(_cli_path()), key=lambda m: m.name):
        module = importlib.import_module(f"audiokit.cli.{info.name}")
        if hasattr(module, "add_parser") and hasattr(module, "run"):
            module.add_parser(subparsers).set_defaults(run=module.run)
    return parser


def _cli_path() -> list[str]:
    """Folders of the audiokit.cli package."""
    return list(importlib.import_module("audiokit.cli").__path__)


def _show_progress_notes() -> None:
    """The library's info messages (e.g. a one-time model export) as plain lines on stderr."""
    logger = logging.getLogger("audiokit")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C, so that every ``finally`` and ``except BaseException`` cleans up."""


def _terminate(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the clean-up is not interrupted by a second one
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]), run the subcommand and return its exit status."""
    handle = threading.current_thread() is threading.main_thread()  # (signals reach the main thread only)
    previous = signal.signal(signal.SIGTERM, _terminate) if handle else None
    try:
        return _main(argv)
    finally:
        if handle:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _main(argv: list[str] | None) -> int:
    try:
        parser = build_parser()  # imports every subcommand: Ctrl-C may come here too
        args = parser.parse_args(argv)
        _show_progress_notes()
        if not hasattr(args, "run"):
            parser.print_help(sys.stderr)
            return 2
        return int(args.run(args) or 0)
    except BrokenPipeError:  # `audiokit models | head`: the reader left; nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not fail again
        return 141
    except (AudiokitError, OSError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
