"""``edgepress distill``: teacher → student, beside the same student trained without a teacher."""

from __future__ import annotations

import argparse

from .main import positive_int
from .options import add_data, data_spec

HELP = "distil a trained teacher into a smaller student, beside a no-teacher baseline"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("--teacher", required=True, metavar="RUN", help="trained teacher run directory")
    p.add_argument("--student", required=True, metavar="NAME[:k=v]",
                   help="zoo student (e.g. lenet5:width=0.25) or a run directory to start from")
    p.add_argument("--out", required=True, metavar="RUN2", help="run directory of the KD student")
    p.add_argument("--temperature", type=float, default=4.0, help="softmax temperature T (4)")
    p.add_argument("--alpha", type=float, default=0.7, help="weight of the soft term α (0.7)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs of both arms (default: the student's recipe)")
    p.add_argument("--seeds", type=positive_int, default=1, help="seeds per arm (1)")
    p.add_argument("--seed", type=int, default=0, help="first seed (0)")
    p.add_argument("--cache-teacher", action="store_true",
                   help="compute teacher logits once over train (faster, uses memory)")
    p.add_argument("--hint", default=None, metavar="T_LAYER:S_LAYER",
                   help="also match one intermediate layer through a learned 1×1 projection")
    p.add_argument("--hint-weight", type=float, default=1.0, help="weight of the hint loss (1)")
    p.add_argument("--lr", type=float, default=None, help="learning rate of both arms")
    p.add_argument("--batch-size", type=positive_int, default=None, help="batch of both arms")
    add_data(p, "the teacher's data")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..distill import DistillConfig, distill

    config = DistillConfig(temperature=args.temperature, alpha=args.alpha, epochs=args.epochs,
                           seeds=args.seeds, seed=args.seed, cache_teacher=args.cache_teacher,
                           hint=args.hint, hint_weight=args.hint_weight, lr=args.lr,
                           batch_size=args.batch_size)
    s = distill(args.teacher, args.student, config, out=args.out, data=data_spec(args),
                progress=not args.no_progress)
    gap = "n/a (teacher no better)" if s["gap_closed"] is None else f"{s['gap_closed']:.1%}"
    print(f"teacher {s['teacher_accuracy']:.4f} | KD student {s['kd_mean']:.4f} ± "
          f"{s['kd_std']:.4f} | baseline {s['baseline_mean']:.4f} ± {s['baseline_std']:.4f} | "
          f"gap closed {gap}")
    print(f"wrote {args.out} ({args.out}/distill.json, baseline in {args.out}/baseline)")
    return 0
