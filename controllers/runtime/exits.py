"""The exit codes of every command and console script: one table, in the README and in every ``--help``.

A pipeline can tell "not ready" (1) from "could not tell" (3) and from its own mistake (2).
"""

from __future__ import annotations

OK = 0  # ready, agreed, done (or nothing to do)
BLOCKED = 1  # blocked, not agreed, could not act
USAGE = 2  # a usage or configuration error: a flag, a value, a config file, the kubeconfig
UNCHECKED = 3  # could not check: the apiserver unreachable, the credentials refused, a permission missing

TABLE = """\
exit codes:
  0  ready, agreed, done
  1  blocked, not agreed, could not act
  2  usage or configuration error (a flag, a value, a config file, the kubeconfig)
  3  could not check: the apiserver unreachable, the credentials refused, a permission missing"""
