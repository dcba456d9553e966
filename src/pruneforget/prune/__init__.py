"""Pruning: APTP's prunable structure, gated (masked) UNets, MAC counting, expert extraction, static pruners."""
