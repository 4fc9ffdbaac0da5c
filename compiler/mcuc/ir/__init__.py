"""The float IR (graph) and its numpy reference interpreter."""

from mcuc.ir.graph import Graph, Node, Tensor

__all__ = ["Graph", "Node", "Tensor"]
