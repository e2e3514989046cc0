"""``edgepress`` entry point: dispatch to a subcommand module; turn bad input into exit code 2.

Exit codes: 0 success; 2 bad input or usage (one ``edgepress: error: ...`` line on stderr);
1 an internal failure.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# Subcommands are the modules of this package that define HELP, add_arguments and run;
# ORDER only sets how --help lists them.
ORDER = ("train", "import", "export", "measure", "compare", "prune", "quantize", "distill",
         "structure",
         "pack", "unpack", "compress", "search", "study")


def commands() -> dict[str, str]:
    """``{subcommand: module}`` discovered in ``edgepress.cli`` (a module per subcommand)."""
    import pkgutil

    from .. import cli

    # a keyword command lives in a module with a trailing underscore (import_.py: "import")
    found = {m.name.rstrip("_"): f"edgepress.cli.{m.name}"
             for m in pkgutil.iter_modules(cli.__path__)
             if not m.name.startswith("_") and m.name not in _NOT_COMMANDS}
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


_NOT_COMMANDS = {"main", "options", "tables"}


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line and exit code 2."""

    def error(self, message: str):  # noqa: D102
        fail(f"{message} (see '{self.prog} --help')")


def fail(message: str, code: int = 2):  # noqa: ANN201
    """Print ``edgepress: error: message`` on stderr and exit."""
    sys.stderr.write(f"edgepress: error: {message}\n")
    raise SystemExit(code)


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def build_parser() -> Parser:
    """The full parser, with every subcommand's arguments."""
    from ..version import __version__

    parser = Parser(prog="edgepress", description="Compress neural networks for edge devices and "
                    "measure what each step really buys.")
    parser.add_argument("--version", action="version", version=f"edgepress {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in commands().items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


_MEASURING = ("measure", "compare")  # their --threads defaults to 1


def _pin_threads(argv: list[str]) -> None:
    """Pin OpenMP/MKL pools to ``--threads`` before numeric libraries load (to 1, its default,
    for the measuring commands when the flag is not given).
    """
    value = "1" if argv and argv[0] in _MEASURING else None
    for i, a in enumerate(argv):
        given = a.split("=", 1)[1] if a.startswith("--threads=") else (
            argv[i + 1] if a == "--threads" and i + 1 < len(argv) else None)
        value = given if given is not None else value
    if value is not None and value.isdigit() and int(value) > 0:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = value


_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_SIGNAL = ["SIGINT"]  # the signal that interrupted the command, for its last line


def _on_sigterm_interrupt():  # noqa: ANN202
    """SIGINT and SIGTERM interrupt the command (KeyboardInterrupt), so every temp folder is
    cleaned up on the way out instead of the process dying mid-write. An interrupt that lands
    in a garbage-collector callback is swallowed by Python (it reports it as "unraisable"):
    then it is raised again 50 ms later, in ordinary code (SIGALRM). Returns what to restore.
    """
    import signal

    def again(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def stop(signum: int, frame: object) -> None:
        _SIGNAL[0] = signal.Signals(signum).name
        raise KeyboardInterrupt

    hook = sys.unraisablehook

    def unraisable(info: object) -> None:
        if isinstance(getattr(info, "exc_value", None), KeyboardInterrupt):
            signal.setitimer(signal.ITIMER_REAL, 0.05)  # swallowed: deliver it again
            return
        hook(info)  # type: ignore[arg-type]

    sys.unraisablehook = unraisable
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, again)
    return previous, hook


def _restore_signals(previous: tuple) -> None:
    import signal

    handlers, hook = previous
    signal.setitimer(signal.ITIMER_REAL, 0)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    sys.unraisablehook = hook


def _writer_lock(args: argparse.Namespace):  # noqa: ANN202
    """The output lock of the command's ``--out`` (none for commands that write no output)."""
    import contextlib

    from ..locks import output_lock

    out = getattr(args, "out", None)
    if out is None:
        return contextlib.nullcontext()
    hint = " (search workers on one host each need their own --out)" \
        if args.command == "search" else ""
    return output_lock(out, hint=hint)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    previous = _on_sigterm_interrupt()  # first: an interrupt while starting is one line too
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        _pin_threads(argv)
        args = build_parser().parse_args(argv)
        from ..errors import InputError
        from ..export.onnx import ExportError
    except KeyboardInterrupt:
        _restore_signals(previous)
        fail(f"interrupted ({_SIGNAL[0]}) while starting: nothing was written", 130)
    except BaseException:  # --help, a usage error: the caller's signal handlers come back
        _restore_signals(previous)
        raise
    try:
        with _writer_lock(args):
            return int(args._run(args) or 0)
    except InputError as e:
        fail(str(e), 2)
    except OSError as e:
        if e.errno not in _CANNOT_WRITE:
            _report_internal(e)
        fail(f"cannot write {e.filename or 'the output'}: {e.strerror}; nothing half-written "
             "is left", 2)
    except ExportError as e:
        fail(str(e), 1)
    except KeyboardInterrupt:
        _restore_signals(previous)
        fail(f"interrupted ({_SIGNAL[0]}): every finished step is kept and nothing half-written "
             "is left; run the same command again to resume", 130)
    except Exception as e:  # an internal failure: one line, exit 1; the traceback on request
        _report_internal(e)
    finally:
        _restore_signals(previous)
    return 0


def _report_internal(e: BaseException) -> None:
    """An internal failure: one line, exit 1; the traceback with ``EDGEPRESS_DEBUG=1``."""
    if os.environ.get("EDGEPRESS_DEBUG"):
        raise e
    fail(f"internal error: {type(e).__name__}: {e} (set EDGEPRESS_DEBUG=1 for a traceback)", 1)


if __name__ == "__main__":
    sys.exit(main())
