r"""Read a recipe file: a YAML list of steps, each validated against its config, with line numbers.

A recipe is a list; each item is a mapping with ``step:`` (a registered step: ``prune``,
``quantize``, ``distill``, ``structure``) and that step's options — the keys of its config
dataclass (``-`` and ``_`` are interchangeable), plus flat aliases such as ``finetune_epochs``::

    - step: prune
      method: magnitude
      sparsity: 0.9
      finetune_epochs: 8
    - step: quantize
      mode: static

Every problem — YAML syntax, a step that is not a mapping, an unknown step or key, a value of the
wrong type or out of range — is an ``InputError`` naming the file and the line, found before
anything runs.

Example:
    >>> r = parse_recipe("- step: quantize\n  mode: static\n", "int8.yaml")
    >>> r.steps[0].name, r.steps[0].config.mode, r.steps[0].line
    ('quantize', 'static', 1)
    >>> parse_recipe("- step: prune\n  sparsty: 0.9\n", "r.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgepress.errors.InputError: r.yaml line 2: unknown key 'sparsty' for step prune (did you ...
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..steps.registry import StepType, get_step, step_names


@dataclass
class Step:
    """One validated recipe step: its type, validated config, and where it is in the file."""

    index: int
    kind: StepType
    config: Any
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The step's name (``prune``, ``quantize``, ...)."""
        return self.kind.name

    @property
    def label(self) -> str:
        """``prune magnitude``, ``quantize static``: the step and its method or mode."""
        detail = next((getattr(self.config, a) for a in ("method", "mode", "student")
                       if isinstance(getattr(self.config, a, None), str)), None)
        return f"{self.name} {detail}" if detail else self.name

    def to_dict(self) -> dict[str, Any]:
        """``{"step": name, **the resolved config}``."""
        return {"step": self.name, **self.config.to_dict()}


@dataclass
class Recipe:
    """A parsed, validated recipe: where it came from and its steps."""

    source: str
    sha256: str
    steps: list[Step]

    def to_dict(self) -> dict[str, Any]:
        """The recipe as run: file, text hash and each step's full config."""
        return {"file": self.source, "sha256": self.sha256,
                "steps": [s.to_dict() for s in self.steps]}


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe file.

    Raises:
        InputError: a missing file or any problem in it (with its line).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"recipe {str(p)!r} does not exist")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read recipe {p}: {e}") from None
    return parse_recipe(text, str(p))


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Validate a recipe's text (see the module docstring); ``source`` names it in errors."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):  # no recipe needs one; a bomb is made of them
                line = event.start_mark.line + 1 if event.start_mark else 1
                raise InputError(f"{source} line {line}: YAML anchors and aliases (&name, "
                                 "*name) are not allowed in a recipe: write each step out")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or (str(e).splitlines() or ["?"])[0]
        raise InputError(f"{source}{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply to be a recipe") from None
    if root is None or not isinstance(root, yaml.SequenceNode) or not data:
        line = root.start_mark.line + 1 if root is not None else 1
        raise InputError(f"{source} line {line}: a recipe is a non-empty YAML list of steps "
                         f"('- step: prune', its options, '- step: quantize', ...)")
    steps = [_step(i + 1, node, value, source)
             for i, (node, value) in enumerate(zip(root.value, data, strict=True))]
    return Recipe(source, hashlib.sha256(text.encode()).hexdigest(), steps)


def _step(index: int, node: yaml.Node, value: Any, source: str) -> Step:
    line = node.start_mark.line + 1

    def fail(msg: str, at: int = line) -> InputError:
        return InputError(f"{source} line {at}: {msg}")

    if not isinstance(node, yaml.MappingNode) or not isinstance(value, dict):
        raise fail(f"step {index} must be a mapping like 'step: prune' with its options")
    key_lines, raw = _keys(node, fail)
    name = value.get("step")
    if name is None:
        raise fail(f"step {index} has no 'step:' key (one of {', '.join(step_names())})")
    if not isinstance(name, str) or name not in step_names():
        raise fail(f"unknown step {name!r}{_did_you_mean(str(name), step_names())} (known: "
                   f"{', '.join(step_names())})", key_lines["step"])
    kind = get_step(name)
    if kind.unavailable:
        raise fail(kind.unavailable, key_lines["step"])
    options = {_norm(k): v for k, v in value.items() if k != "step"}
    for key, v in list(options.items()):
        if key not in kind.keys():
            raise fail(f"unknown key {key!r} for step {name}"
                       f"{_did_you_mean(key, sorted(kind.keys()))}; it takes: "
                       f"{', '.join(sorted(kind.keys()))}", key_lines[key])
        options[key] = _typed(key, v, raw.get(key), kind.field_type(key),
                              lambda m, k=key: fail(f"step {name}: {m}", key_lines[k]))
    try:
        config = kind.parse(options)
    except (InputError, TypeError, ValueError) as e:
        at = _line_of(str(e), options, kind.aliases, key_lines, line)
        raise fail(f"step {name}: {e}", at) from None
    return Step(index, kind, config, line, key_lines)


def _norm(key: Any) -> str:
    return str(key).replace("-", "_")


def _keys(node: yaml.MappingNode, fail: Any) -> tuple[dict[str, int], dict[str, yaml.Node]]:
    """Line of each key and its value node; a key given twice is an error (YAML keeps the
    last one silently).
    """
    lines: dict[str, int] = {}
    raw: dict[str, yaml.Node] = {}
    for k, v in node.value:
        key = _norm(k.value) if isinstance(k, yaml.ScalarNode) else str(k.value)
        if key in lines:
            raise fail(f"key {key!r} is given twice (first on line {lines[key]})",
                       k.start_mark.line + 1)
        lines[key], raw[key] = k.start_mark.line + 1, v
    return lines, raw


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _line_of(message: str, options: dict[str, Any], aliases: Mapping[str, str],
             key_lines: dict[str, int], default: int) -> int:
    """The line of the option an error message is about (``sparsity`` or ``--sparsity``;
    a nested option such as ``finetune: {epochs: ...}`` by its flat alias ``finetune-epochs``).
    """
    found = []
    for key in options:
        names = {key} | {a for a, target in aliases.items() if target.split(".")[0] == key}
        words = names | {n.replace("_", "-") for n in names}
        pattern = "|".join(re.escape(w) for w in words)
        m = re.search(rf"(?<![\w-])(?:--)?(?:{pattern})(?![\w-])", message)
        if m:
            found.append((m.start(), key))
    # the variant selector (method, mode) is named in most messages; the culprit is the other
    found.sort(key=lambda f: (f[1] in _SELECTORS, f[0]))
    return key_lines.get(found[0][1], default) if found else default


_SELECTORS = ("method", "mode")


def _typed(key: str, value: Any, node: yaml.Node | None, hint: Any, fail: Any) -> Any:
    """``value`` checked against the option's declared type.

    A text option written as something YAML reads otherwise (``nm: 2:4`` is the base-60 number
    124 in YAML 1.1) takes the text as written.
    """
    if _accepts(hint, value):
        return value
    if (_accepts(hint, "") and isinstance(node, yaml.ScalarNode) and not node.style
            and value is not None):
        return node.value
    raise fail(f"{key} must be {_describe(hint)} (got {value!r})")


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text",
          type(None): "null"}


def _accepts(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, list) and all(_accepts(args[0] if args else Any, v)
                                               for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str, type(None)):
        return isinstance(value, hint)
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return isinstance(value, dict)  # nested options: validated by the config itself
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin in (list, tuple):
        return "a list"
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return "a mapping of options"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def shipped_recipes() -> list[Path]:
    """The recipe files shipped with edgepress (``edgepress/recipes/*.yaml``).

    >>> "int8" in [p.stem for p in shipped_recipes()]
    True
    """
    return sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
