"""``commonsense``: the eight commonsense-reasoning tasks of LLM-Adapters (the DoRA and LoRA papers).

Data: ``<data root>/<task>/train.json`` and ``test.json`` in the LLM-Adapters format, a JSON list
of ``{instruction, input, output, answer}`` whose instruction holds the options and ends with an
``Answer format: a/b/...`` line. Without ``--data-root`` the tasks come from the hub
(``google/boolq``, ``ybisk/piqa``, ...) and are converted to that format; the test sets are then
the hub's validation splits where its test labels are hidden, as in LLM-Adapters.

Splits: the protocol trains one model on the mixture of the eight training sets (``mixture``)
and tests it on each task. Per task here: ``val`` is a fixed-seed 10% (at most 200) of the
training file, ``train`` the rest, ``trainval`` the whole file, ``test`` the test file.
A task whose training file is absent trains on the mixture of the tasks that have one (its own
data is then only tested). That is the case of piqa, social_i_qa and winogrande in the data kept
beside the project (files over 4 MiB were left out); hellaswag has no files there at all, so
loading it from that folder fails.
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

from peftbench.data import SPLIT_SEED, fixed_order
from peftbench.errors import UsageError
from peftbench.lm import ChoiceExample
from peftbench.task import Splits, Suite, Task


def _labels(stem: str, n: int) -> tuple[str, ...]:
    return tuple(f"{stem}{i}" for i in range(1, n + 1))


#: task -> every answer label its format allows (an example may offer fewer: ARC's 3-option items)
FORMATS = {
    "boolq": ("true", "false"),
    "piqa": _labels("solution", 2),
    "social_i_qa": _labels("answer", 3),
    "hellaswag": _labels("ending", 4),
    "winogrande": _labels("option", 2),
    "ARC-Easy": _labels("answer", 5),
    "ARC-Challenge": _labels("answer", 5),
    "openbookqa": _labels("answer", 4),
}
VAL_FRACTION, VAL_MAX = 0.1, 200
LAYOUT = "<root>/<task>/train.json and test.json in the LLM-Adapters format"
ANSWER_FORMAT = re.compile(r"Answer format:\s*(\S+)\s*$")


# ---- LLM-Adapters rows -> examples ---------------------------------------------------------

def parse_row(task: str, row: dict, where: str) -> ChoiceExample:
    """One LLM-Adapters row; the options come from its ``Answer format:`` line."""
    try:
        instruction, answer = row["instruction"], str(row["answer"]).strip()
    except (TypeError, KeyError) as exc:
        raise UsageError(f"{where}: expected an object with 'instruction' and 'answer'") from exc
    found = ANSWER_FORMAT.search(instruction)
    options = tuple(found.group(1).split("/")) if found else FORMATS[task]
    if not set(options) <= set(FORMATS[task]):
        raise UsageError(f"{where}: answer format {'/'.join(options)} is not {task}'s ({'/'.join(FORMATS[task])})")
    if answer not in options:
        raise UsageError(f"{where}: answer {answer!r} is not one of {'/'.join(options)}")
    if row.get("input"):  # LLM-Adapters' commonsense data never uses it; keep it rather than drop it
        instruction = f"{instruction}\n\n{row['input']}"
    return ChoiceExample.from_instruction(task, instruction, options, options.index(answer))


def parse_rows(task: str, rows, source: str) -> tuple[ChoiceExample, ...]:
    if not isinstance(rows, list):
        raise UsageError(f"{source}: expected a JSON list of LLM-Adapters rows")
    return tuple(parse_row(task, row, f"{source}: example {i}") for i, row in enumerate(rows))


def read_file(task: str, path: Path) -> tuple[ChoiceExample, ...]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    return parse_rows(task, rows, str(path))


# ---- the hub (needs internet; converts to the LLM-Adapters rows) ---------------------------

def _choose(question: str, texts, stem: str = "Answer", sep: str = " ") -> str:
    lines = sep.join(f"{stem}{i}: {text}" for i, text in enumerate(texts, 1))
    labels = "/".join(f"{stem.lower()}{i}" for i in range(1, len(texts) + 1))
    return f"Please choose the correct {question}\n\n{lines}\n\nAnswer format: {labels}"


def _boolq(r):
    return (f"Please answer the following question with true or false, question: {r['question']}?"
            "\n\nAnswer format: true/false", str(r["answer"]).lower())


def _piqa(r):
    return (_choose(f"solution to the question: {r['goal']}", [r["sol1"], r["sol2"]], "Solution", "\n\n"),
            f"solution{int(r['label']) + 1}")


def _siqa(r):
    texts = [r["answerA"], r["answerB"], r["answerC"]]
    return _choose(f"answer to the question: {r['context']} {r['question']}", texts), f"answer{r['label']}"


def _hellaswag(r):
    question = f"ending to complete the given sentence: {r['activity_label']}: {r['ctx']}"
    return _choose(question, r["endings"], "Ending"), f"ending{int(r['label']) + 1}"


def _winogrande(r):  # LLM-Adapters writes no blank line before the format here
    return (f"Please choose the correct answer to fill in the blank to complete the given sentence: "
            f"{r['sentence']}\n\nOption1: {r['option1']} Option2: {r['option2']} Answer format: option1/option2",
            f"option{r['answer']}")


def _arc(r, question="question"):
    choices = r["choices"]
    answer = f"answer{choices['label'].index(r['answerKey']) + 1}"
    return _choose(f"answer to the question: {r[question]}", choices["text"]), answer


#: task -> (dataset, config, test split, row -> (instruction, answer label))
HUB = {
    "boolq": ("google/boolq", None, "validation", _boolq),
    "piqa": ("ybisk/piqa", None, "validation", _piqa),
    "social_i_qa": ("allenai/social_i_qa", None, "validation", _siqa),
    "hellaswag": ("Rowan/hellaswag", None, "validation", _hellaswag),
    "winogrande": ("allenai/winogrande", "winogrande_xl", "validation", _winogrande),
    "ARC-Easy": ("allenai/ai2_arc", "ARC-Easy", "test", _arc),
    "ARC-Challenge": ("allenai/ai2_arc", "ARC-Challenge", "test", _arc),
    "openbookqa": ("allenai/openbookqa", "main", "test", partial(_arc, question="question_stem")),
}


def hub_rows(task: str) -> dict[str, list[dict]]:
    """{"train": rows, "test": rows} from the hub, as LLM-Adapters rows."""
    import datasets

    name, config, test_split, convert = HUB[task]
    try:
        loaded = datasets.load_dataset(name, config)
    except OSError as exc:  # offline, unreachable, or not on the hub (ConnectionError is an OSError)
        raise UsageError(f"cannot load commonsense/{task} from the hub ({name}): "
                         f"{str(exc).splitlines()[0]}; pass --data-root ({LAYOUT})") from exc
    rows = {}
    for split, source in (("train", "train"), ("test", test_split)):
        rows[split] = []
        for r in loaded[source]:
            instruction, answer = convert(r)
            rows[split].append({"instruction": instruction, "input": "", "answer": answer,
                                "output": f"the correct answer is {answer}"})
    return rows


# ---- splits ---------------------------------------------------------------------------------

def hold_out(examples: tuple, seed: int = SPLIT_SEED) -> tuple[tuple, tuple]:
    """(train, val): val is a fixed-seed 10% of the examples, at most VAL_MAX."""
    n_val = min(VAL_MAX, int(len(examples) * VAL_FRACTION))
    order = fixed_order(len(examples), seed)
    val = set(order[:n_val].tolist())
    return (tuple(e for i, e in enumerate(examples) if i not in val),
            tuple(examples[i] for i in sorted(val)))


def load_examples(name: str, data_root=None) -> dict[str, tuple[ChoiceExample, ...]]:
    """{"train": ..., "test": ...}; train is empty when the folder has no train.json."""
    if data_root is None:
        return {split: parse_rows(name, rows, f"hub {HUB[name][0]} {split}")
                for split, rows in hub_rows(name).items()}
    folder = Path(data_root).expanduser() / name
    if not (folder / "test.json").is_file():
        raise UsageError(f"missing {folder / 'test.json'} for commonsense/{name} (--data-root must hold {LAYOUT})")
    train = folder / "train.json"
    return {"train": read_file(name, train) if train.is_file() else (),
            "test": read_file(name, folder / "test.json")}


def load_commonsense(name: str, image_size=None, mean=None, std=None, data_root=None) -> Splits:
    examples = load_examples(name, data_root)
    training = examples["train"]
    if not training:  # no training file: train on the mixture of the tasks that have one
        others = [t for t in FORMATS if t != name and (Path(data_root) / t / "train.json").is_file()]
        training = tuple(mixture(others, data_root))
    train, val = hold_out(training)
    return Splits(train=train, val=val, trainval=training, test=examples["test"])


def mixture(tasks, data_root=None, fraction: float = 1.0, seed: int = SPLIT_SEED) -> list[ChoiceExample]:
    """The protocol's training set: every training example of the given tasks (names or Tasks)
    together; ``fraction`` < 1 keeps a fixed-seed share of it (the sample-efficiency study)."""
    if not 0 < fraction <= 1:
        raise UsageError(f"fraction must be in (0, 1], got {fraction}")
    pool = [e for task in tasks for e in load_examples(getattr(task, "name", task), data_root)["train"]]
    keep = fixed_order(len(pool), seed)[:round(len(pool) * fraction)]
    return [pool[i] for i in sorted(keep.tolist())]


COMMONSENSE = Suite(
    name="commonsense",
    description="BoolQ, PIQA, SIQA, HellaSwag, WinoGrande, ARC-e/c, OBQA in the LLM-Adapters format",
    tasks=tuple(Task("commonsense", name, "commonsense", "text", len(labels), partial(load_commonsense, name),
                     kind="choice") for name, labels in FORMATS.items()),
    recipe={"backbone": "smollm2-135m", "epochs": 3, "batch_size": 16, "max_length": 256, "image_size": None},
)
