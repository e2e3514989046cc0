"""Flags shared by several subcommands, defined once."""

from __future__ import annotations

import argparse

from .main import positive_int


def add_data(p: argparse.ArgumentParser, default_help: str) -> None:
    """``--data D`` and ``--input-size HxW``."""
    p.add_argument("--data", metavar="D", default=None,
                   help="fashion-mnist, digits, npz:PATH, imagefolder:DIR or photos[:DIR] "
                        "(photographs without labels: agreement is reported instead of "
                        f"accuracy) (default: {default_help})")
    p.add_argument("--input-size", metavar="HxW", default=None,
                   help="resize an image folder's images or the photographs to H×W pixels "
                        "(imagefolder, photos)")


def data_spec(args: argparse.Namespace) -> str | None:
    """``--data`` with ``--input-size`` folded in (``imagefolder:DIR@HxW``).

    Raises:
        InputError: ``--input-size`` without an image folder.
    """
    from ..data import with_input_size

    return with_input_size(args.data, getattr(args, "input_size", None))


def add_model(p: argparse.ArgumentParser) -> None:
    """``--model SPEC`` and ``--weights FILE``."""
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="zoo model (cnn, mlp, lenet5:width=0.5, mobilenet-mini) or your own "
                        "FILE.py:FACTORY[:k=v,...] / package.module:FACTORY[:k=v,...]")
    p.add_argument("--weights", metavar="FILE", default=None,
                   help="weights to load: safetensors, or a PyTorch state dict (loaded with "
                        "weights_only=True, never pickle)")


def add_seed(p: argparse.ArgumentParser) -> None:
    """``--seed S``."""
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def add_runtime(p: argparse.ArgumentParser) -> None:
    """``--runtime``, ``--threads``, ``--batch``."""
    p.add_argument("--runtime", default="onnxruntime",
                   help="onnxruntime or executorch (default: onnxruntime)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="threads the runtime may use (default: 1)")
    p.add_argument("--batch", type=positive_int, default=1,
                   help="batch size for latency (default: 1)")


def add_finetune(p: argparse.ArgumentParser, epochs_help: str) -> None:
    """``--finetune-epochs``, ``--finetune-lr``, ``--train-subset`` (methods that fine-tune)."""
    p.add_argument("--finetune-epochs", type=int, metavar="N", default=None, help=epochs_help)
    p.add_argument("--finetune-lr", type=float, metavar="LR", default=None,
                   help="peak fine-tuning learning rate (default: half the model's recipe)")
    p.add_argument("--train-subset", type=positive_int, default=None, metavar="N",
                   help="fine-tune on the first N training images only (quick runs)")
    add_teacher(p)


def add_teacher(p: argparse.ArgumentParser) -> None:
    """``--finetune-teacher``, ``--finetune-alpha``, ``--finetune-temperature``."""
    p.add_argument("--finetune-teacher", metavar="none|parent|RUN", default=None,
                   help="distil from this model while fine-tuning: parent (the unpruned model) "
                        "or a run directory (default: none, the labels alone)")
    p.add_argument("--finetune-alpha", type=float, metavar="A", default=None,
                   help="weight of the teacher's soft targets (default 0.7)")
    p.add_argument("--finetune-temperature", type=float, metavar="T", default=None,
                   help="distillation temperature (default 4)")


def add_output(p: argparse.ArgumentParser) -> None:
    """``--wide`` (every table column) and ``--no-progress`` (no live lines on stderr)."""
    p.add_argument("--wide", action="store_true",
                   help="every column, exact counts (default: a layout that fits 80 columns; "
                        "piped output is Markdown)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
