"""``edgepress pack``: a run's weights into the entropy-coded download archive (``.epz``)."""

from __future__ import annotations

import argparse

HELP = "pack a run into an entropy-coded archive (sparse gaps, codebooks, Huffman / LZMA)"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("run", metavar="RUN", help="run directory with PyTorch weights (not changed)")
    p.add_argument("--out", required=True, metavar="FILE.epz", help="archive file to write")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="also write the size breakdown (per stream and tensor) here as JSON")


def breakdown_table(info: dict):  # noqa: ANN201
    """Bytes per stream kind, each coder's candidate size, and the totals."""
    from rich.table import Table

    t = Table(title=f"{info['file']}: {info['bytes']:,} B = {info['ratio']:.1f}× smaller than "
              f"fp32 (4 B × {info['params']:,} params = {info['fp32_bytes']:,} B)")
    for col in ("part", "streams", "symbols", "raw B", "huffman B", "lzma B", "stored B",
                "coders"):
        t.add_column(col, justify="left" if col in ("part", "coders") else "right")
    for kind, k in info["streams"].items():
        coders = ", ".join(f"{c}×{n}" for c, n in k["coders"].items())
        t.add_row(kind, str(k["streams"]), f"{k['symbols']:,}", f"{k['raw_bytes']:,}",
                  f"{k['huffman_bytes']:,}", f"{k['lzma_bytes']:,}", f"{k['bytes']:,}", coders)
    t.add_row("header + manifest", "", "", "", "", "",
              f"{info['header_bytes'] + info['manifest_bytes']:,}", "manifest: lzma")
    t.add_row("total", "", "", f"{info['uncoded_bytes']:,}", "", "", f"{info['bytes']:,}",
              f"predicted {info['predicted_bytes']:,}")
    return t


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..checkpoint import check_output_file, write_json
    from ..pack import pack
    from .tables import show

    if args.json:
        check_output_file(args.json)
    info = pack(args.run, out=args.out)
    show(breakdown_table(info))
    if args.json:
        write_json(args.json, info)
        print(f"wrote {args.json}")
    print(f"wrote {args.out}")
    return 0
