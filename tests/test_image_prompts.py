"""Prompt sets: the paper's lists, drawing (template share, determinism, evaluation cycling), errors."""
from __future__ import annotations

import math

import pytest
import torch

from seiko.image.prompts import DATA_DIR, PAPER_TEMPLATE, PromptSet, load_prompts, read_lines


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_paper_lists_and_template():
    prompts = load_prompts("paper")
    assert (len(prompts.query), len(prompts.train), len(prompts.evaluate)) == (1000, 45, 6)
    assert prompts.query[:3] == ("tench", "goldfish", "great white shark") and prompts.query[-1] == "toilet tissue"
    assert prompts.evaluate == ("snail", "hippopotamus", "cheetah", "crocodile", "lobster", "octopus")
    assert not set(prompts.evaluate) & set(prompts.train)  # held out
    assert {"cat", "dog", "horse", "llama", "kangaroo"} <= set(prompts.train)
    assert prompts.template == PAPER_TEMPLATE and prompts.template_prob == 0.2
    assert PAPER_TEMPLATE.format("cat") == \
        "A stunning beautiful oil painting of a cat, cinematic lighting, golden hour light."
    for name in ("imagenet_classes.txt", "simple_animals.txt", "eval_animals.txt"):  # clean files
        text = (DATA_DIR / name).read_text(encoding="utf-8")
        assert "\r" not in text and text.endswith("\n")
        assert all(line == line.strip() and line for line in text.splitlines())


def test_query_wraps_with_the_template_probability():
    prompts = load_prompts()
    n = 2000
    drawn = prompts.draw(n, gen(0), "query")
    assert len(drawn) == n
    wrapped = [p for p in drawn if p.startswith("A stunning beautiful oil painting of a ")]
    share = len(wrapped) / n
    assert abs(share - 0.2) < 4 * math.sqrt(0.2 * 0.8 / n)  # binomial, 4 sigma
    names = set(prompts.query)
    prefix, suffix = PAPER_TEMPLATE.split("{}")
    assert all(p[len(prefix):-len(suffix)] in names for p in wrapped)
    assert all(p in names for p in drawn if p not in wrapped)
    assert len(set(drawn) & names) > 500  # spread over the classes
    assert not any(p.startswith(prefix) for p in load_prompts(template_prob=0).draw(200, gen(0), "query"))
    assert all(p.startswith(prefix) for p in load_prompts(template_prob=1).draw(200, gen(0), "query"))


def test_draws_are_deterministic_in_the_generator():
    prompts = load_prompts()
    for purpose in ("query", "train"):
        assert prompts.draw(64, gen(3), purpose) == prompts.draw(64, gen(3), purpose)
        assert prompts.draw(64, gen(3), purpose) != prompts.draw(64, gen(4), purpose)
    train = prompts.draw(500, gen(1), "train")
    assert set(train) <= set(prompts.train) and len(set(train)) == 45
    g = gen(5)
    first, second = prompts.draw(8, g, "query"), prompts.draw(8, g, "query")
    assert first != second  # the generator advances


def test_evaluate_cycles_without_randomness():
    prompts = load_prompts()
    g = gen(0)
    state = g.get_state()
    drawn = prompts.draw(14, g, "evaluate")
    assert drawn == [prompts.evaluate[i % 6] for i in range(14)]
    assert torch.equal(g.get_state(), state)  # the generator is not used
    assert prompts.draw(14, gen(9), "evaluate") == drawn
    assert prompts.draw(0, gen(0), "query") == []
    with pytest.raises(ValueError, match="purpose"):
        prompts.draw(2, gen(0), "other")


def test_lists_replaced_by_files_or_lists(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("a red fox\n\n  a blue whale  \r\n")
    prompts = load_prompts(train=str(path), evaluate=["an owl"], query=["chair", "table"], template="{} at dusk",
                           template_prob=0.5)
    assert prompts.train == ("a red fox", "a blue whale") and prompts.evaluate == ("an owl",)
    assert read_lines(path) == ["a red fox", "a blue whale"]
    assert set(prompts.draw(100, gen(0), "query")) == {"chair", "table", "chair at dusk", "table at dusk"}
    assert prompts.words() == ["a", "an", "at", "blue", "chair", "dusk", "fox", "owl", "red", "table", "whale"]
    direct = PromptSet(["x y"], ["Z"], ["w"], None, 0.0)
    assert direct.words() == ["w", "x", "y", "z"] and direct.draw(3, gen(0)) == ["x y"] * 3


def test_words_cover_every_prompt():
    prompts = load_prompts()
    words = set(prompts.words())
    assert {"stunning", "oil", "painting", "golden", "hour", "tench", "hippopotamus", "jack-o'-lantern"} <= words
    assert all(w == w.lower() and w for w in words)
    for p in prompts.draw(300, gen(2), "query") + list(prompts.train) + list(prompts.evaluate):
        for token in p.lower().replace(",", " ").replace(".", " ").split():
            assert token.strip("'-") in words, token


@pytest.mark.parametrize("kwargs, field", [
    (dict(query=[]), "domain.prompts.query"),
    (dict(train=[]), "domain.prompts.train"),
    (dict(evaluate=["ok", ""]), "domain.prompts.evaluate"),
    (dict(train="/no/such/file.txt"), "domain.prompts.train"),
    (dict(query=5), "domain.prompts.query"),
    (dict(template="an oil painting"), "domain.prompts.template"),
    (dict(template_prob=1.5), "domain.prompts.template_prob"),
    (dict(template_prob=-0.1), "domain.prompts.template_prob"),
    (dict(name="laion"), "domain.prompts.name"),
])
def test_bad_values_are_one_line_naming_the_field(kwargs, field):
    with pytest.raises(ValueError) as info:
        load_prompts(**kwargs)
    message = str(info.value)
    assert message.startswith(field) and "\n" not in message


def test_empty_prompt_file_is_an_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n \n")
    with pytest.raises(ValueError, match=r"^domain\.prompts\.evaluate"):
        load_prompts(evaluate=str(path))
