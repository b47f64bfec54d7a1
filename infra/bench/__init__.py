"""The throughput benchmark: PromptForge end to end on the local stack against peer tools.

Run ``.venv/bin/python -m infra.bench.throughput --help``; see ``docs/benchmarks.md``.
Importing this package loads nothing heavy: the peers and matplotlib live in ``.venv-bench``.
"""
