"""Pruning: APTP's prunable structure, gated (masked) UNets, MAC counting, expert extraction, static pruners.

The static pruners of `prune-static` (rule prune_static, experts `expert-{budget}-{method}`), named
once here; the rules import these tables, so this module imports nothing heavy:

- `METHODS`: every static pruner (dispatch: prune/select.py).
- `NEEDS_DATA`: the pruners that measure importance on D_f probe batches (prune/probe.py), so
  `prune-static` needs `--data` for them and refuses it for the others.
"""

METHODS = ("magnitude", "random", "taylor", "blocks")
NEEDS_DATA = ("taylor", "blocks")
