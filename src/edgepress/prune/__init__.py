"""Pruning: magnitude / threshold, L1-regularised, N:M semi-structured and channel removal.

One verb per use: :func:`prune_` prunes and fine-tunes a model in place; :func:`prune` turns a run
directory into a new, measured run. :func:`sensitivity_scan` prunes one layer at a time.
Which kinds make a model smaller on disk, which make it faster, and which do neither is for the
measurement to say: unstructured zeros shrink the gzip'd and the sparse file but not the dense
kernels' work; removed channels cut MACs and latency.

Example:
    >>> from edgepress.prune import PruneConfig
    >>> PruneConfig(method="channel", channel_ratio=0.5).importance
    'l2'
"""

from .config import AgpOptions, FinetuneOptions, PruneConfig
from .run import PruneReport, prune, prune_
from .sensitivity import scan_run, sensitivity_scan, write_scan
from .storage import load_sparse, save_sparse

__all__ = ["AgpOptions", "FinetuneOptions", "PruneConfig", "PruneReport", "load_sparse", "prune",
           "prune_", "save_sparse", "scan_run", "sensitivity_scan", "write_scan"]
