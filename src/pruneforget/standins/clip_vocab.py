"""A small, valid CLIP byte-level BPE vocabulary, learned from a corpus.

No installed package ships CLIP's `bpe_simple_vocab_16e6` (open_clip, which does, needs
torchvision), so the stand-ins learn their own merges the way CLIP's vocabulary is laid out:
the 256 byte symbols, the same with the end-of-word mark `</w>`, one token per merge in merge
order, then `<|startoftext|>` and `<|endoftext|>`. `CLIPTokenizer` reads the result as it
reads the real `vocab.json` / `merges.txt`; any text still tokenizes (every byte is a token).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from transformers.convert_slow_tokenizer import bytes_to_unicode

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIP's pre-tokenizer pattern (letters, digits one by one, other symbols), ASCII form.
_WORDS = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")


def _words(corpus: list[str]) -> Counter:
    """Word -> count, each word as CLIP spells it before BPE: bytes as unicode symbols."""
    to_unicode = bytes_to_unicode()
    counts: Counter = Counter()
    for text in corpus:
        for word in _WORDS.findall(" ".join(text.lower().split())):
            counts["".join(to_unicode[b] for b in word.encode("utf-8"))] += 1
    return counts


def learn_merges(corpus: list[str], merges: int) -> list[tuple[str, str]]:
    """Up to `merges` BPE merges, most frequent adjacent pair first (ties: the smaller pair)."""
    words = {tuple(w[:-1]) + (w[-1] + "</w>",): n for w, n in _words(corpus).items()}
    learned: list[tuple[str, str]] = []
    while len(learned) < merges:
        pairs: Counter = Counter()
        for symbols, n in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        learned.append(best)
        merged = {}
        for symbols, n in words.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] = n
        words = merged
    return learned


def write_vocab(out_dir: str | Path, corpus: list[str], merges: int = 600) -> int:
    """Write `vocab.json` and `merges.txt` into `out_dir`; returns the vocabulary size."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    learned = learn_merges(corpus, merges)
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in learned] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in learned))
    return len(vocab)
