"""Export to deployment formats. ``onnx`` here; ExecuTorch (``.pte``) joins later.

These modules are the only ones that import the exporters, and they do it lazily.
"""
