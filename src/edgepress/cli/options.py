"""Flags shared by several subcommands, defined once."""

from __future__ import annotations

import argparse

from .main import positive_int


def add_data(p: argparse.ArgumentParser, default_help: str) -> None:
    """``--data D``."""
    p.add_argument("--data", metavar="D", default=None,
                   help=f"fashion-mnist, digits or npz:PATH (default: {default_help})")


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
