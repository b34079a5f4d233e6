"""Datasets: IOI prompts with named positions, their corruptions, export, and prompt files."""

from scrub.data.corrupt import CORRUPTIONS, corrupt, parse_corruptions
from scrub.data.files import IOIVocabulary, datasets_dir
from scrub.data.ioi import ORDER_CHOICES, make_ioi
from scrub.data.promptfile import load_pair, load_prompts, write_prompts
from scrub.data.promptset import POSITION_NAMES, PromptSet, PromptSpec, build_promptset
from scrub.data.tokenizer import build_word_tokenizer, ioi_word_tokenizer, load_tokenizer
from scrub.data.tokenset import TokenSet

__all__ = [
    "CORRUPTIONS",
    "IOIVocabulary",
    "ORDER_CHOICES",
    "POSITION_NAMES",
    "PromptSet",
    "PromptSpec",
    "TokenSet",
    "build_promptset",
    "build_word_tokenizer",
    "corrupt",
    "datasets_dir",
    "ioi_word_tokenizer",
    "load_pair",
    "load_prompts",
    "load_tokenizer",
    "make_ioi",
    "parse_corruptions",
    "write_prompts",
]
