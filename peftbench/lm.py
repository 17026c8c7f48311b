"""Causal language models answering multiple-choice questions, the LLM-Adapters way.

An example is an instruction in the Alpaca template; the model learns the response
``the correct answer is <label>``. Evaluation either scores every label by the log-probability
of its response given the prompt ("loglik": no parsing failures) or generates greedily and
takes the first allowed label in the text ("generate": the DoRA and LoRA papers' way).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .compute import autocast, device
from .loading import shuffled
from .recipe import EVAL_MODES
from .train import TrainConfig, TrainStats, fit

PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately "
          "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
RESPONSE = "the correct answer is {}"
IGNORE = -100  # the label cross-entropy skips: prompt tokens and padding
#: loglik: the labels' responses ("the correct answer is solution1"), what training teaches;
#: text: the options' own texts, meaningful before any training (zero-shot); generate: greedy
#: generation and the papers' answer extraction.
MODES = EVAL_MODES
_LABEL = r"(?:Solution|Answer|Option|Ending)\d+:"
_OPTION = re.compile(rf"{_LABEL}\s*(.*?)\s*(?={_LABEL}|Answer format:|$)",
                     re.DOTALL)


@dataclass(frozen=True)
class ChoiceExample:
    task: str
    prompt: str  # PROMPT filled with the instruction
    options: tuple[str, ...]  # the answer labels of the format, e.g. ("solution1", "solution2")
    answer: int  # index of the gold label in options
    target: str  # the training response, e.g. "the correct answer is solution1"
    texts: tuple[str, ...] = ()  # each option's own text, read from the instruction

    @classmethod
    def from_instruction(cls, task: str, instruction: str, options, answer: int) -> ChoiceExample:
        options = tuple(options)
        texts = tuple(_OPTION.findall(instruction))
        return cls(task, PROMPT.format(instruction=instruction), options, answer,
                   RESPONSE.format(options[answer]), texts if len(texts) == len(options) else options)


# ---- tokens -------------------------------------------------------------------------------

def pad_id(tokenizer) -> int:
    return tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id


def _ids(tokenizer, text: str, special: bool = False) -> list[int]:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def _prompt_ids(tokenizer, prompt: str, room: int) -> list[int]:
    """The prompt's tokens cut to ``room`` from the front: the end holds the options and the
    response header, which the answer needs; a leading BOS stays."""
    ids = _ids(tokenizer, prompt, special=True)
    if len(ids) <= room:
        return ids
    head = ids[:1] if tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id] else []
    keep = max(room - len(head), 0)
    return head + ids[len(ids) - keep:]


def encode(tokenizer, example: ChoiceExample, max_length: int = 256) -> tuple[list[int], list[int]]:
    """Input ids and labels of prompt + target + EOS; the prompt's labels are IGNORE."""
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]  # EOS stops generation
    target = _ids(tokenizer, example.target) + eos
    prompt = _prompt_ids(tokenizer, example.prompt, max_length - len(target))
    return prompt + target, [IGNORE] * len(prompt) + target


def _pad(rows, value: int, left: bool = False) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([[value] * (width - len(r)) + list(r) if left else list(r) + [value] * (width - len(r))
                         for r in rows])


def _batch(rows, pad: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    return _pad(rows, pad, left), _pad([[1] * len(r) for r in rows], 0, left)


def encode_batch(tokenizer, examples, max_length: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and attention mask of prompt + target + EOS for ``examples``, right-padded."""
    return _batch([encode(tokenizer, e, max_length)[0] for e in examples], pad_id(tokenizer))


# ---- training -----------------------------------------------------------------------------

def _response_loss(model, ids, mask, labels) -> torch.Tensor:
    """Mean cross-entropy of the response tokens; only their logits are cast and scored."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    labels = labels[:, 1:]
    scored = labels != IGNORE
    return F.cross_entropy(logits[scored].float(), labels[scored])


def train_lm(model, tokenizer, examples, config: TrainConfig, max_length: int = 256,
             desc: str = "train", progress: bool = True, on_epoch=None) -> TrainStats:
    """peftbench.train.train for causal LMs: AdamW, warm-up then cosine, seeded shuffling,
    loss on the response tokens only, right padding."""
    if not examples:
        raise ValueError("train_lm needs at least one example")
    pad = pad_id(tokenizer)
    data = [encode(tokenizer, e, max_length) for e in examples]

    def collate(rows):
        ids, labels = zip(*rows)
        return (*_batch(ids, pad), _pad(labels, IGNORE))

    batches = shuffled(data, config.batch_size, config.seed, config.epoch_samples, collate_fn=collate)
    return fit(model, batches, lambda m, batch: _response_loss(m, *batch), config, desc, progress, on_epoch)


# ---- evaluation ---------------------------------------------------------------------------

def _score_rows(tokenizer, example: ChoiceExample, max_length: int, texts: bool = False):
    """Token rows that together score every option's full response.

    Each row is (ids, targets); a target (position, token, owners) adds the log-probability of
    ``token`` at ``position`` to the options in ``owners``. When the responses differ only in
    their last token (every LLM-Adapters format with common tokenizers) one row serves all
    options, which costs one forward pass per example instead of one per option.
    """
    responses = [_ids(tokenizer, RESPONSE.format(o)) for o in (example.texts if texts else example.options)]
    prompt = _prompt_ids(tokenizer, example.prompt, max_length - max(map(len, responses)))
    start = len(prompt)

    def targets(response, owners):  # the token at start + j is predicted at start + j - 1
        return [(start + j - 1, token, owners) for j, token in enumerate(response)]

    if len({tuple(r[:-1]) for r in responses}) == 1:
        shared = responses[0][:-1]
        lasts = [targets(r, (k,))[-1] for k, r in enumerate(responses)]
        return [(prompt + shared, targets(shared, tuple(range(len(responses)))) + lasts)]
    return [(prompt + r[:-1], targets(r, (k,))) for k, r in enumerate(responses)]


@torch.no_grad()
def option_scores(model, tokenizer, examples, batch_size: int = 16, max_length: int = 256,
                  texts: bool = False) -> list[list[float]]:
    """Per example, the summed log-probability of each option's response given the prompt
    (with ``texts``, of the option's own text in place of its label)."""
    dev, pad = device(), pad_id(tokenizer)
    rows = [(i, ids, targets) for i, e in enumerate(examples)
            for ids, targets in _score_rows(tokenizer, e, max_length, texts)]
    rows.sort(key=lambda row: len(row[1]))  # similar lengths share a batch: little padding
    scores = [[0.0] * len(e.options) for e in examples]
    for first in range(0, len(rows), batch_size):
        chunk = rows[first:first + batch_size]
        ids, mask = _batch([row[1] for row in chunk], pad)
        with autocast(dev):
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
        for b, (i, _, targets) in enumerate(chunk):
            positions, tokens, owners = zip(*targets)
            logp = logits[b, list(positions)].float().log_softmax(-1)
            for value, token_owners in zip(logp[range(len(tokens)), list(tokens)].tolist(), owners):
                for k in token_owners:
                    scores[i][k] += value
    return scores


@torch.no_grad()
def generate(model, tokenizer, prompts, batch_size: int = 16, max_length: int = 256,
             max_new_tokens: int = 32) -> list[str]:
    """Greedy continuations of the prompts; batches are left-padded so every row continues
    from its own last token."""
    dev, pad = device(), pad_id(tokenizer)
    rows = [_prompt_ids(tokenizer, p, max_length) for p in prompts]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    texts = [""] * len(rows)
    for first in range(0, len(order), batch_size):
        chunk = order[first:first + batch_size]
        ids, mask = _batch([rows[i] for i in chunk], pad, left=True)
        with autocast(dev):
            out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad)
        for i, text in zip(chunk, tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)):
            texts[i] = text
    return texts


def extract_answer(text: str, options) -> int | None:
    """The papers' extraction: the first allowed label anywhere in the text, else None."""
    pattern = "|".join(map(re.escape, sorted(options, key=len, reverse=True)))  # longest first
    match = re.search(pattern, text)
    return list(options).index(match.group()) if match else None


def evaluate_choices(model, tokenizer, examples, mode: str = "loglik", batch_size: int = 16,
                     max_length: int = 256) -> dict:
    """accuracy, samples_per_s, parse_failures (generate mode; a failure counts as wrong) and
    gold_loglik (loglik mode: the mean summed log-probability of the gold response).

    Label scoring (loglik) measures what training teaches; an untrained small model sits near
    chance with it (it prefers one label), so zero-shot evaluation scores the texts (text).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not examples:
        raise ValueError("evaluate_choices needs at least one example")
    model.to(device()).eval()
    start = time.perf_counter()
    gold_loglik = None
    if mode in ("loglik", "text"):
        scores = option_scores(model, tokenizer, examples, batch_size, max_length, texts=mode == "text")
        predictions = [max(range(len(s)), key=s.__getitem__) for s in scores]
        gold_loglik = sum(s[e.answer] for s, e in zip(scores, examples)) / len(examples)
    else:
        texts = generate(model, tokenizer, [e.prompt for e in examples], batch_size, max_length)
        predictions = [extract_answer(t, e.options) for t, e in zip(texts, examples)]
    seconds = time.perf_counter() - start
    right = [p == e.answer for p, e in zip(predictions, examples)]
    return {"accuracy": sum(right) / len(examples), "samples_per_s": len(examples) / seconds,
            "parse_failures": predictions.count(None), "gold_loglik": gold_loglik, "correct": right}
