"""Text prompts as config: which prompts the queries, the fine-tuning and the evaluation use.

The paper's set ("paper", as in its reference code, github.com/zhaoyl18/SEIKO):
- query: the 1000 ImageNet class names (the first, common name of each class), each wrapped
  with probability 0.2 in "A stunning beautiful oil painting of a {}, cinematic lighting,
  golden hour light." (the reference code's ``good_prompt_prop`` and its wording);
- train: 45 simple animals (DDPO's ``assets/simple_animals.txt``, which SEIKO ships too);
- evaluate: 6 held-out animals (SEIKO's ``assets/eval_simple_animals.txt``), cycled in a fixed
  order so every round's evaluation images share prompts (and, with fixed seeds, noise).
Each list can be replaced by a text file (one prompt per line) or a list.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

DATA_DIR = Path(__file__).resolve().parent / "data"
PAPER_TEMPLATE = "A stunning beautiful oil painting of a {}, cinematic lighting, golden hour light."
PAPER_FILES = {"query": "imagenet_classes.txt", "train": "simple_animals.txt", "evaluate": "eval_animals.txt"}
PURPOSES = ("query", "train", "evaluate")
FIELD = "domain.prompts"


def read_lines(path: str | Path) -> list[str]:
    """Non-empty stripped lines of a text file (one prompt per line)."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class PromptSet:
    query: tuple[str, ...]
    train: tuple[str, ...]
    evaluate: tuple[str, ...]
    template: str | None = PAPER_TEMPLATE  # wraps query prompts; None: never
    template_prob: float = 0.2

    def __post_init__(self):
        for name in PURPOSES:  # lists (or text files) -> tuples of stripped prompts
            object.__setattr__(self, name, _prompt_list(name, getattr(self, name)))
        _check_template(self.template, self.template_prob)

    def draw(self, num: int, generator: torch.Generator, purpose: str = "query") -> list[str]:
        """``num`` prompts for ``purpose``: "query" (uniform ImageNet names, each wrapped in the
        template with probability ``template_prob``), "train" (uniform over the train list) or
        "evaluate" (prompt i = evaluate[i % len], no randomness). The same generator state gives
        the same prompts."""
        num = int(num)
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        if purpose == "evaluate":
            return [self.evaluate[i % len(self.evaluate)] for i in range(num)]
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}")
        pool = self.query if purpose == "query" else self.train
        if num == 0:
            return []
        index = torch.randint(len(pool), (num,), generator=generator, device=generator.device).tolist()
        prompts = [pool[i] for i in index]
        if purpose == "query" and self.template is not None and self.template_prob > 0:
            wrap = (torch.rand(num, generator=generator, device=generator.device) < self.template_prob).tolist()
            prompts = [self.template.format(p) if w else p for p, w in zip(prompts, wrap)]
        return prompts

    def all_prompts(self) -> list[str]:
        """Every prompt that ``draw`` can return."""
        out = list(self.query) + list(self.train) + list(self.evaluate)
        if self.template is not None and self.template_prob > 0:
            out += [self.template.format(q) for q in self.query]
        return out

    def words(self) -> list[str]:
        """Every distinct lowercase word of all prompts and of the template, sorted (words split at
        anything but letters, digits, apostrophes and hyphens: "jack-o'-lantern" is one word)."""
        text = " ".join(list(self.query) + list(self.train) + list(self.evaluate)
                        + ([self.template.replace("{}", " ")] if self.template else []))
        tokens = (t.strip("'-") for t in re.split(r"[^a-z0-9'-]+", text.lower()))
        return sorted({t for t in tokens if t})


def _check_template(template, prob) -> None:
    if template is not None and (not isinstance(template, str) or template.count("{}") != 1):
        raise ValueError(f"{FIELD}.template must be a string with one {{}} where the name goes (or null), "
                         f"got {template!r}")
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
        raise ValueError(f"{FIELD}.template_prob must be a probability in [0, 1], got {prob!r}")


def _prompt_list(name: str, value) -> tuple[str, ...]:
    """A list (or tuple / ListConfig) of prompts, or a path to a text file of them."""
    field = f"{FIELD}.{name}"
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"{field}: no prompt file {str(value)!r} (a text file, one prompt per line, or a list)")
        lines = read_lines(path)
        if not lines:
            raise ValueError(f"{field}: the prompt file {str(value)!r} has no prompts")
        return tuple(lines)
    try:
        values = list(value)
    except TypeError:
        raise ValueError(f"{field} must be a list of prompts or a path to a text file, got {value!r}") from None
    if not values:
        raise ValueError(f"{field} must not be empty")
    if not all(isinstance(v, str) and v.strip() for v in values):
        bad = next(v for v in values if not (isinstance(v, str) and v.strip()))
        raise ValueError(f"{field}: every prompt must be a non-empty string, got {bad!r}")
    return tuple(v.strip() for v in values)


def load_prompts(name: str = "paper", query=None, train=None, evaluate=None, template: str | None = None,
                 template_prob: float = 0.2) -> PromptSet:
    """The named prompt set ("paper"), each of its lists replaceable by a list or a text file.

    ``template`` None keeps the set's template (the paper's oil-painting wording); give
    ``template_prob=0`` to never wrap."""
    if name != "paper":
        raise ValueError(f"{FIELD}.name must be paper (or give query, train and evaluate), got {name!r}")
    lists = {}
    for purpose, value in (("query", query), ("train", train), ("evaluate", evaluate)):
        lists[purpose] = _prompt_list(purpose, DATA_DIR / PAPER_FILES[purpose] if value is None else value)
    template = PAPER_TEMPLATE if template is None else template
    _check_template(template, template_prob)
    return PromptSet(template=template, template_prob=float(template_prob), **lists)
