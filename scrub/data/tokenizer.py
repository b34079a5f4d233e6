"""Tokenizers for IOI datasets: the project's word-level tokenizer, or any Hugging Face one."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from scrub.data.files import IOIVocabulary
from scrub.errors import ScrubError

BOS = "<|endoftext|>"  # id 0: beginning of sequence, end of sequence and padding, as in GPT-2
UNK = "<unk>"  # id 1


def words_of(texts: Iterable[str]) -> list[str]:
    """Distinct words and punctuation marks of ``texts`` as the word-level tokenizer splits them."""
    from tokenizers.pre_tokenizers import Whitespace

    split = Whitespace()
    seen: dict[str, None] = {}
    for text in texts:
        for piece, _ in split.pre_tokenize_str(text.replace("[", " ").replace("]", " ")):
            seen.setdefault(piece, None)
    return list(seen)


def build_word_tokenizer(words: Iterable[str], *, sort: bool = True):
    """A fast word-level tokenizer: ids 0 and 1 are BOS/pad and UNK, then ``words`` sorted (or,
    with ``sort=False``, in the given order, as tests that fix token ids want).

    >>> tok = build_word_tokenizer(["Mary", "went", "."])
    >>> tok("Mary went .")["input_ids"]
    [3, 4, 2]
    >>> build_word_tokenizer(["w2", "w3"], sort=False)("w3 w2")["input_ids"]
    [3, 2]
    """
    from tokenizers import Tokenizer, models
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {BOS: 0, UNK: 1}
    for w in sorted(set(words)) if sort else words:
        vocab.setdefault(w, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=BOS, pad_token=BOS, unk_token=UNK
    )


def ioi_word_tokenizer(vocab: IOIVocabulary | None = None):
    """The word-level tokenizer over every word the IOI data files use."""
    v = vocab or IOIVocabulary.load()
    texts = [*v.templates, *v.names, *v.places, *v.objects, *v.prefixes]
    return build_word_tokenizer(words_of(texts))


def splits_only_on_spaces(tokenizer) -> bool:
    """Whether ``tokenizer`` leaves punctuation glued to words it does not know, as a word-level
    tokenizer that splits on whitespace does ("garden." is one piece, and unknown), so prompts
    for it need punctuation spaced out. A tokenizer that splits punctuation off (GPT-2's BPE, a
    word-level one with a punctuation-aware pre-tokenizer) or has no unknown token does not.

    >>> splits_only_on_spaces(build_word_tokenizer(["garden", "."]))  # splits off punctuation
    False
    """
    unk = tokenizer.unk_token_id
    if unk is None:
        return False
    probe = "Then, they went to the garden."
    enc = tokenizer(probe, add_special_tokens=False, return_offsets_mapping=True)
    return any(
        t == unk and re.search(r"\w", probe[a:b]) and re.search(r"[^\w\s]", probe[a:b])
        for t, (a, b) in zip(enc["input_ids"], enc["offset_mapping"])
    )


def load_tokenizer(spec: str = "toy-ioi"):
    """``toy-ioi`` (the shipped model's tokenizer, else the IOI word-level one) or an HF dir."""
    from transformers import AutoTokenizer

    if spec == "toy-ioi":
        shipped = Path(__file__).resolve().parents[1] / "models" / "toy_ioi"
        if (shipped / "tokenizer.json").is_file():
            return AutoTokenizer.from_pretrained(shipped)
        return ioi_word_tokenizer()
    path = Path(spec)
    if not path.exists():
        raise ScrubError(
            f"tokenizer {spec!r} is neither 'toy-ioi' nor an existing path",
            fix="pass --tokenizer toy-ioi or a Hugging Face tokenizer directory",
        )
    try:
        return AutoTokenizer.from_pretrained(path, use_fast=True)
    except (OSError, ValueError) as e:
        raise ScrubError(
            f"could not load a tokenizer from {path}: {e}",
            fix="point --tokenizer at a directory with tokenizer.json (or vocab files)",
        ) from None
