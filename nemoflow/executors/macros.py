"""Executor macros: placeholders in a command (``${head_node_ip_var}``) that each executor fills in its own way."""

from __future__ import annotations

import copy
import dataclasses
from string import Template
from typing import Any, ClassVar, TypeVar

R = TypeVar("R")


@dataclasses.dataclass(kw_only=True)
class ExecutorMacros:
    """The names an executor gives the head node's address, the process and node counts and the node rank.

    A command written with ``ExecutorMacros.HEAD_NODE_IP_VAR`` (``${head_node_ip_var}``) is made concrete
    for one executor by ``executor.macro_values().substitute(...)``.
    """

    HEAD_NODE_IP_VAR: ClassVar[str] = "${head_node_ip_var}"
    NPROC_PER_NODE_VAR: ClassVar[str] = "${nproc_per_node_var}"
    NUM_NODES_VAR: ClassVar[str] = "${num_nodes_var}"
    NODE_RANK_VAR: ClassVar[str] = "${node_rank_var}"
    FT_LAUNCHER_CFG_PATH_VAR: ClassVar[str] = "${ft_launcher_cfg_path_var}"

    head_node_ip_var: str
    nproc_per_node_var: str
    num_nodes_var: str
    node_rank_var: str
    het_group_host_var: str
    ft_launcher_cfg_path_var: str = "FAULT_TOL_CFG_PATH"

    @staticmethod
    def group_host(index: int) -> str:
        """The placeholder of the host of heterogeneous group ``index``."""
        return f"$$${{het_group_host_var}}_{index}"

    def substitute(self, arg: str) -> str:
        """``arg`` with every ``${name}`` of these macros replaced by its value (others are left as they are)."""
        return Template(arg).safe_substitute(**dataclasses.asdict(self))

    def apply(self, role: R) -> R:
        """A copy of ``role`` (anything with ``args`` and ``env``) with the macros substituted in both."""
        new: Any = copy.deepcopy(role)
        new.args = [self.substitute(arg) for arg in new.args]
        new.env = {key: self.substitute(value) for key, value in new.env.items()}
        return new
