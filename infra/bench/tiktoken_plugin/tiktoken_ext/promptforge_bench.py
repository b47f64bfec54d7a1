"""A tiktoken encoding that needs no download, for the benchmark's run of the cookbook script.

``tiktoken.get_encoding("cl100k_base")`` fetches its BPE file from the internet the first
time; this machine has none. tiktoken finds encodings in the ``tiktoken_ext`` namespace
package, so putting ``infra/bench/tiktoken_plugin`` on ``PYTHONPATH`` registers this module's
``ENCODING_CONSTRUCTORS`` and the script runs with ``--token_encoding_name promptforge_bench_bytes``.

The encoding is byte-level (one token per UTF-8 byte, no merges): it overestimates real
token counts about fourfold, which only matters for a token limit, and the benchmark gives
the script a token limit that does not bind.
"""

from __future__ import annotations

from typing import Any

ENCODING_NAME = "promptforge_bench_bytes"

# GPT-2's pre-tokenisation pattern; with no merges it changes nothing but is required.
_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _bytes_encoding() -> dict[str, Any]:
    return {
        "name": ENCODING_NAME,
        "pat_str": _PAT_STR,
        "mergeable_ranks": {bytes([i]): i for i in range(256)},
        "special_tokens": {},
    }


ENCODING_CONSTRUCTORS = {ENCODING_NAME: _bytes_encoding}
