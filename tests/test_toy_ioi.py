"""Fast checks of the shipped toy IOI checkpoint (scrub/models/toy_ioi) with plain HF + hooks."""

from __future__ import annotations

import json

import pytest
import torch

from scrub.data.files import IOIVocabulary
from scrub.data.promptset import POSITION_NAMES
from scrub.data.tokenizer import words_of
from scrub.models import toy_eval as ev

CLASSES = {"name mover", "s-inhibition", "induction", "duplicate token", "previous token"}


@pytest.fixture(scope="module")
def toy():
    torch.set_num_threads(1)
    return ev.load_toy(ev.TOY_DIR)


@pytest.fixture(scope="module")
def circuit():
    return ev.read_circuit(ev.TOY_DIR)


def test_loads_standalone_with_hf_auto_classes(toy):
    model, tok = toy
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert tok.bos_token_id == 0 and tok.pad_token_id == 0
    assert tok.convert_ids_to_tokens(0) == "<|endoftext|>"
    assert model.config.n_positions >= 64


def test_tokenizer_covers_every_dataset_word(toy):
    _, tok = toy
    v = IOIVocabulary.load()
    texts = [*v.templates, *ev.train_templates(), *v.names, *v.places, *v.objects, *v.prefixes]
    missing = [w for w in words_of(texts) if w not in tok.get_vocab()]
    assert not missing


def test_checkpoint_is_small():
    total = sum(p.stat().st_size for p in ev.TOY_DIR.iterdir() if p.is_file())
    assert total <= 20 * 2**20


def test_circuit_json_is_valid(toy, circuit):
    model, _ = toy
    cfg = model.config
    assert circuit["kind"] in ("planted", "plain")
    json.dumps(circuit)
    if circuit["kind"] == "plain":
        return
    seen = set()
    for h in circuit["heads"]:
        assert 0 <= h["layer"] < cfg.n_layer and 0 <= h["head"] < cfg.n_head
        assert h["class"] in CLASSES
        assert h["variable"] in ev.HL_VARIABLES[circuit["high_level"]]
        assert set(h["positions"]) <= set(POSITION_NAMES)
        seen.add(h["variable"])
    assert seen == set(ev.HL_VARIABLES[circuit["high_level"]])
    assert len({(h["layer"], h["head"]) for h in circuit["heads"]}) == len(circuit["heads"])


def test_quality_bars_on_heldout_prompts(toy):
    model, tok = toy
    q = ev.quality(model, tok, n=400, seed=1)
    assert q.passed(), q.table()


def test_ground_truth_bars(toy, circuit):
    if circuit["kind"] != "planted":
        pytest.skip("plain model: no planted ground truth (see MODEL_CARD.md)")
    model, tok = toy
    gt = ev.ground_truth(model, tok, circuit, n=300, seed=1)
    assert gt.passed(), gt.table()


def test_high_level_model_semantics():
    baba = ev.HLInput("John", "Mary", "John")  # S in slot 1
    abba = ev.HLInput("Mary", "John", "John")  # S in slot 2
    assert ev.hl_run(baba)["NM"] == {"Mary"}
    assert ev.hl_run(ev.HLInput("Ann", "Mary", "John"))["NM"] == {"Ann", "Mary"}  # ABC: tie
    assert ev.hl_interchange(baba, abba, "SINH") == {"John"}  # inhibition flipped
    assert ev.hl_interchange(baba, abba, "DUP") == {"John", "Mary"}  # one vote each: tie
    assert ev.hl_interchange(baba, abba, "IND") == {"John", "Mary"}
    assert ev.hl_interchange(baba, abba, "PT") == {"John", "Mary"}  # induction now points at 2
    assert ev.hl_interchange(baba, ev.HLInput("Kim", "Bob", "Kim"), "NM") == {"Bob"}
    assert ev.hl_interchange(baba, baba, "DUP") == {"Mary"}
