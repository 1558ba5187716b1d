"""YAML read with a bound on its expanded size, for the command line's ``--config`` files and
values (jsonargparse's loader, replaced in one place by :func:`install`).

A YAML alias refers to an earlier node, so a file of a few lines can describe a tree of billions
of nodes (the "billion laughs"): loading it is cheap, but every later step that walks it
(validation, copying, saving the config) hangs. Recipes use anchors legitimately, so aliases stay
allowed; the tree they expand to is counted before it is loaded, and refused past
``MAX_YAML_NODES``.
"""

from typing import Any

import yaml
from jsonargparse import get_loader, set_loader

MAX_YAML_NODES = 1_000_000
"""Most nodes a YAML document may expand to (a recipe holds a few hundred)."""


class YAMLTooLargeError(ValueError):
    """A YAML document whose aliases expand past ``MAX_YAML_NODES`` nodes, or nest too deep."""


def expanded_nodes(node: yaml.Node, counted: dict[int, int] | None = None) -> int:
    """How many nodes the tree under ``node`` holds with every alias expanded, counted once per
    distinct node (linear in the document's size), stopping past ``MAX_YAML_NODES``."""
    counted = {} if counted is None else counted
    if id(node) in counted:
        return counted[id(node)]
    counted[id(node)] = 1  # a node that refers to itself counts once: no endless loop
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        children = []
    for child in children:
        total += expanded_nodes(child, counted)
        if total > MAX_YAML_NODES:
            break
    counted[id(node)] = total
    return total


def bounded_loader(load: Any) -> Any:
    """``load`` (a function of a YAML string) preceded by the size check."""

    def load_bounded(stream: str) -> Any:
        try:
            node = yaml.compose(stream, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            node = None  # malformed: ``load`` reports it as it always does
        try:
            size = expanded_nodes(node) if node is not None else 0
        except RecursionError:
            raise YAMLTooLargeError("a YAML value nests too deeply to be a configuration") from None
        if size > MAX_YAML_NODES:
            raise YAMLTooLargeError(
                f"a YAML configuration expands to more than {MAX_YAML_NODES:,} values through "
                "its aliases (*name), which no recipe needs; is it an alias bomb? Write the "
                "values out, or use fewer nested aliases")
        return load(stream)

    return load_bounded


def install() -> None:
    """Make jsonargparse read YAML through :func:`bounded_loader` (once per process)."""
    load = get_loader("yaml")
    if not getattr(load, "bounded", False):
        bounded = bounded_loader(load)
        bounded.bounded = True
        set_loader("yaml", bounded, exceptions=(yaml.YAMLError,))
