"""Implementations behind the `jalign` CLI subcommands (kept out of `jalign.cli` so that the
parser imports nothing heavy)."""
