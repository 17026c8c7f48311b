"""The commonsense suite on the real LLM-Adapters files, and causal-LM multiple choice
(peftbench.lm) on a tiny random Llama and on the real SmolLM2-135M."""

import copy
import json
from dataclasses import replace

import pytest
import torch
from conftest import SHARED_DATA

from peftbench.errors import UsageError
from peftbench.lm import (IGNORE, RESPONSE, ChoiceExample, encode, evaluate_choices, extract_answer, generate,
                          option_scores, train_lm)
from peftbench.tasks.commonsense import (COMMONSENSE, HUB, load_commonsense, load_examples, mixture,
                                         parse_rows)
from peftbench.train import TrainConfig

DATA = SHARED_DATA / "commonsense"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"no commonsense data at {DATA} (kept beside the project, not shipped)")

#: task -> (test, train) counts from shared/data/README.md; None: the file is not there
COUNTS = {
    "boolq": (3270, 9427), "piqa": (1838, None), "social_i_qa": (1954, None), "winogrande": (1267, None),
    "ARC-Easy": (2376, 2251), "ARC-Challenge": (1172, 1119), "openbookqa": (500, 4957),
}
#: task -> (options, answer, target) of the first test example
FIRST = {
    "boolq": (("true", "false"), 1, "the correct answer is false"),
    "piqa": (("solution1", "solution2"), 0, "the correct answer is solution1"),
    "social_i_qa": (("answer1", "answer2", "answer3"), 2, "the correct answer is answer3"),
    "winogrande": (("option1", "option2"), 1, "the correct answer is option2"),
    "ARC-Easy": (("answer1", "answer2", "answer3", "answer4"), 0, "the correct answer is answer1"),
    "openbookqa": (("answer1", "answer2", "answer3", "answer4"), 1, "the correct answer is answer2"),
}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
PIQA_ITEMS, ARC_TRAIN, ARC_TEST = 40, 32, 40  # SmolLM2 reads ~1.5 items/s on one shared core


def splits(task):
    return load_commonsense(task, data_root=DATA)


# ---- the suite and its data ------------------------------------------------------------------

def test_suite_declares_eight_choice_tasks():
    assert [t.name for t in COMMONSENSE.tasks] == ["boolq", "piqa", "social_i_qa", "hellaswag", "winogrande",
                                                   "ARC-Easy", "ARC-Challenge", "openbookqa"]
    assert {(t.kind, t.group, t.modality, t.metric) for t in COMMONSENSE.tasks} == {
        ("choice", "commonsense", "text", "accuracy")}
    assert {t.name: t.num_classes for t in COMMONSENSE.tasks}["social_i_qa"] == 3
    assert COMMONSENSE.recipe == {"backbone": "smollm2-135m", "epochs": 3, "batch_size": 16,
                                  "max_length": 256, "image_size": None}


@needs_data
@pytest.mark.parametrize("task", COUNTS)
def test_counts_match_the_readme_and_every_answer_parses(task):
    n_test, n_train = COUNTS[task]
    s = splits(task)  # a gold answer that does not parse would raise here
    assert len(s.test) == n_test
    assert len(load_examples(task, str(DATA))["train"]) == (n_train or 0)
    assert len(s.train) + len(s.val) == len(s.trainval)
    if n_train:  # without a training file the task trains on the mixture (tested below)
        assert len(s.trainval) == n_train and len(s.val) == min(200, n_train // 10)
    assert not set(s.val) & set(s.train)
    for e in s.test + s.trainval:
        assert 0 <= e.answer < len(e.options) and e.target == RESPONSE.format(e.options[e.answer])
    assert splits(task).val == s.val  # the held-out slice is fixed


@needs_data
@pytest.mark.parametrize("task", [t for t in COUNTS if t != "boolq"])
def test_every_option_text_is_read_from_the_instruction(task):
    for e in splits(task).test:
        assert len(e.texts) == len(e.options) and e.texts != e.options and all(e.texts), e.prompt


@needs_data
def test_hellaswag_is_absent_here():
    with pytest.raises(UsageError, match="hellaswag/test.json"):
        splits("hellaswag")


@needs_data
@pytest.mark.parametrize("task", FIRST)
def test_prompt_options_and_target_of_each_format(task):
    first = splits(task).test[0]
    instruction = json.loads((DATA / task / "test.json").read_text())[0]["instruction"]
    assert first.prompt == ("Below is an instruction that describes a task. Write a response that "
                            "appropriately completes the request.\n\n### Instruction:\n"
                            f"{instruction}\n\n### Response:\n")
    assert (first.options, first.answer, first.target) == FIRST[task]
    assert first.task == task


@needs_data
def test_arc_options_follow_each_items_answer_format():
    sizes = {len(e.options) for e in splits("ARC-Easy").test}
    assert sizes == {3, 4, 5}


@needs_data
def test_mixture_is_all_training_examples():
    assert len(mixture(["boolq", "piqa", "ARC-Easy"], DATA)) == 9427 + 2251
    tenth = mixture(COMMONSENSE.tasks[-3:], DATA, fraction=0.1)
    assert len(tenth) == round((2251 + 1119 + 4957) * 0.1)
    assert tenth == mixture(COMMONSENSE.tasks[-3:], DATA, fraction=0.1)


def test_an_answer_that_does_not_parse_names_the_file_and_example(tmp_path):
    rows = [{"instruction": "Q?\n\nAnswer format: true/false", "input": "", "output": "", "answer": "true"},
            {"instruction": "Q?\n\nAnswer format: true/false", "input": "", "output": "", "answer": "maybe"}]
    (tmp_path / "boolq").mkdir()
    (tmp_path / "boolq" / "test.json").write_text(json.dumps(rows))
    with pytest.raises(UsageError, match=r"boolq/test.json: example 1: answer 'maybe'"):
        load_commonsense("boolq", data_root=tmp_path)
    with pytest.raises(UsageError, match="not boolq's"):
        parse_rows("boolq", [{"instruction": "Answer format: answer1/answer2", "answer": "answer1"}], "x")


def test_without_data_root_an_unreachable_hub_asks_for_it():
    with pytest.raises(UsageError, match="--data-root"):
        load_commonsense("ARC-Easy")


@needs_data
def test_hub_rows_convert_to_the_llm_adapters_text():
    """The converters rebuild the files' instructions from the hub's fields."""
    hub = {
        "boolq": {"question": "does ethanol take more energy make that produces", "answer": False},
        "ARC-Easy": {"question": "Which statement best explains why photosynthesis is the foundation of most "
                                 "food webs?",
                     "choices": {"label": ["A", "B", "C", "D"], "text": [
                         "Sunlight is the source of energy for nearly all ecosystems.",
                         "Most ecosystems are found on land instead of in water.",
                         "Carbon dioxide is more available than other gases.",
                         "The producers in all ecosystems are plants."]}, "answerKey": "A"},
        "social_i_qa": {"context": "Tracy didn't go home that evening and resisted Riley's attacks.",
                        "question": "What does Tracy need to do before this?", "answerA": "make a new plan",
                        "answerB": "Go home and see Riley", "answerC": "Find somewhere to go", "label": "3"},
        "winogrande": {"sentence": "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
                       "option1": "Sarah", "option2": "Maria", "answer": "2"},
    }
    for task, row in hub.items():
        expected = json.loads((DATA / task / "test.json").read_text())[0]
        assert HUB[task][3](row) == (expected["instruction"], expected["answer"]), task


def test_extract_answer_takes_the_first_allowed_label():
    options = ("answer1", "answer2", "answer3")
    assert extract_answer("the correct answer is answer2, not answer1", options) == 1
    assert extract_answer("The Correct Answer Is Answer2", options) is None  # case-sensitive, as the papers
    assert extract_answer("answer4", options) is None


# ---- peftbench.lm on a tiny random Llama with SmolLM2's tokenizer -----------------------------

@pytest.fixture
def tiny(smollm2):  # smollm2: the real backbone, from conftest
    from peftbench.backbones import load_backbone

    torch.manual_seed(0)
    model = load_backbone("tiny-llama").module
    model.resize_token_embeddings(len(smollm2.tokenizer), mean_resizing=False)  # to SmolLM2's vocabulary
    return model, smollm2.tokenizer


def example(task="t", options=("answer1", "answer2", "answer3"), answer=1, question="Pick one."):
    instruction = f"{question}\n\nAnswer format: {'/'.join(options)}"
    return ChoiceExample.from_instruction(task, instruction, options, answer)


def test_encode_masks_the_prompt_and_keeps_the_answer_when_cut(tiny):
    _, tokenizer = tiny
    e = example()
    target = tokenizer(e.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids, labels = encode(tokenizer, e)
    assert labels == [IGNORE] * (len(ids) - len(target)) + target
    assert ids[-len(target):] == target
    short_ids, short_labels = encode(tokenizer, e, max_length=len(target) + 5)
    assert len(short_ids) == len(target) + 5 and short_labels[-len(target):] == target
    assert short_ids[:5] == ids[len(ids) - len(target) - 5:-len(target)]  # the prompt's end survives


@pytest.mark.slow  # 31 epochs of training
def test_train_lm_loss_falls_on_repeated_examples(tiny):
    model, tokenizer = tiny
    data = [example(answer=i % 3, question=f"Question {i}?") for i in range(4)]
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-2, weight_decay=0.0, seed=0)
    first = train_lm(model, tokenizer, data, config, progress=False)
    last = train_lm(model, tokenizer, data, replace(config, epochs=30), progress=False)
    assert last.final_loss < first.final_loss / 3
    assert last.samples_per_s > 0 and last.peak_memory_mb > 0


def test_option_scores_equal_full_sequence_log_probabilities(tiny):
    """Options sharing all but their last token share one row; the sums match scoring each alone."""
    model, tokenizer = tiny
    model.eval()
    data = [example(), example(options=("true", "false"), answer=0), example(question="A longer question " * 9)]
    for e, scores in zip(data, option_scores(model, tokenizer, data, batch_size=2, max_length=48)):
        for option, score in zip(e.options, scores):
            response = tokenizer(RESPONSE.format(option), add_special_tokens=False)["input_ids"]
            prompt = tokenizer(e.prompt)["input_ids"][-(48 - len(response)):]
            with torch.no_grad():
                logp = model(input_ids=torch.tensor([prompt + response])).logits[0].log_softmax(-1)
            expected = sum(logp[len(prompt) + j - 1, t].item() for j, t in enumerate(response))
            assert score == pytest.approx(expected, abs=1e-4)


def test_batched_generation_matches_one_at_a_time(tiny):
    model, tokenizer = tiny
    prompts = [example(question="Short?").prompt, example(question="A much longer question " * 5).prompt]
    assert generate(model, tokenizer, prompts, batch_size=2, max_new_tokens=4) == \
        generate(model, tokenizer, prompts, batch_size=1, max_new_tokens=4)


def test_evaluate_choices_rejects_an_unknown_mode(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="mode"):
        evaluate_choices(model, tokenizer, [example()], mode="vote")


# ---- the real SmolLM2-135M ------------------------------------------------------------------------

@pytest.mark.slow  # the real SmolLM2-135M
@needs_data
def test_zero_shot_piqa_on_smollm2(smollm2):
    """Scoring the options' texts, the pretrained 135M model answers PIQA clearly above chance
    (60 of the first 100 here; 50% is chance, a random model sits there)."""
    result = evaluate_choices(smollm2.module, smollm2.tokenizer, splits("piqa").test[:100], mode="text")
    print(f"zero-shot PIQA, first 100, option texts: {result}")
    assert result["parse_failures"] == 0
    assert result["accuracy"] > 0.55


@pytest.mark.slow  # the real SmolLM2-135M
@needs_data
def test_label_scoring_gives_the_gold_label_a_likely_response(smollm2):
    """Label scoring zero-shot puts the model near chance (it prefers one label), so this checks
    the pipeline: real weights give the gold response a likely-text log-probability (about -12.5
    nats over its ~6 tokens; a random model gives about -65)."""
    result = evaluate_choices(smollm2.module, smollm2.tokenizer, splits("piqa").test[:PIQA_ITEMS])
    assert result["parse_failures"] == 0 and result["gold_loglik"] > -25


@pytest.mark.parametrize("replies, failures, correct", [
    (["the correct answer is true", "the correct answer is false", "the correct answer is false", "true", "false"],
     0, 3),
    (["the correct answer is true", "I cannot tell", "The Correct Answer Is False", "", "false, not true"], 3, 2),
], ids=["well-formed", "garbled"])
def test_generation_mode_counts_each_unparsed_answer_as_a_failure_and_wrong(monkeypatch, replies, failures,
                                                                            correct):
    """Canned continuations in place of a model's: gold answers true, false, true, false, false."""
    import peftbench.lm as lm

    data = [example(options=("true", "false"), answer=a, question=f"Question {i}?")
            for i, a in enumerate([0, 1, 0, 1, 1])]
    asked = []
    monkeypatch.setattr(lm, "generate", lambda model, tokenizer, prompts, *a, **k: asked.extend(prompts) or replies)
    result = evaluate_choices(torch.nn.Identity(), None, data, mode="generate")
    assert asked == [e.prompt for e in data]
    assert result["parse_failures"] == failures
    assert result["accuracy"] == correct / len(data)


@pytest.mark.slow  # the real SmolLM2-135M generating
@needs_data
def test_generation_mode_on_smollm2_counts_the_replies_without_a_label(smollm2, monkeypatch):
    import peftbench.lm as lm

    data, replies = splits("boolq").test[:6], []
    real = lm.generate
    monkeypatch.setattr(lm, "generate", lambda *a, **k: replies.extend(real(*a, **k)) or replies)
    result = evaluate_choices(smollm2.module, smollm2.tokenizer, data, mode="generate")
    assert len(replies) == len(data)
    assert result["parse_failures"] == sum(not ("true" in r or "false" in r) for r in replies), replies


@pytest.mark.slow  # the real SmolLM2-135M, trained
@needs_data
def test_lora_on_arc_easy_learns_the_answers(smollm2):
    """32 ARC-Easy examples, one epoch, on a copy of SmolLM2 (the fixture stays unadapted).

    Measured here: accuracy 0.175 -> 0.225 on 40 test items and gold log-likelihood -13.1 -> -4.8.
    So little training moves the accuracy by a couple of items only, so besides the accuracy
    moving (deterministic here: seeded, one thread) the test asserts on the gold response's
    log-likelihood (the answer-token loss), which moves by nats.
    """
    from peft import LoraConfig, get_peft_model

    s, tokenizer = splits("ARC-Easy"), smollm2.tokenizer
    torch.manual_seed(0)  # LoRA's A matrices
    model = get_peft_model(copy.deepcopy(smollm2.module),
                           LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS))
    before = evaluate_choices(model, tokenizer, s.test[:ARC_TEST])
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-3, weight_decay=0.0, seed=0)
    stats = train_lm(model, tokenizer, s.train[:ARC_TRAIN], config, progress=False)
    after = evaluate_choices(model, tokenizer, s.test[:ARC_TEST])
    print(f"ARC-Easy accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f}, gold log-likelihood "
          f"{before['gold_loglik']:.2f} -> {after['gold_loglik']:.2f}, {stats}")
    assert after["accuracy"] != before["accuracy"]
    assert after["gold_loglik"] > before["gold_loglik"] + 2
    assert stats.final_loss < 1.5 and stats.peak_memory_mb > 0


@needs_data
def test_a_task_without_training_data_trains_on_the_mixture():
    splits = load_commonsense("piqa", data_root=str(DATA))
    assert len(splits.test) == 1838 and len(splits.trainval) == len(mixture(
        ["boolq", "ARC-Easy", "ARC-Challenge", "openbookqa"], str(DATA)))
    assert {e.task for e in splits.train} == {"boolq", "ARC-Easy", "ARC-Challenge", "openbookqa"}


@pytest.mark.slow  # a whole run on the real SmolLM2-135M
@needs_data
def test_the_command_line_runs_the_suite(smollm2, tmp_path):
    from peftbench.cli import main
    from peftbench.store import Store

    store = str(tmp_path / "r.db")
    assert main(["run", "--methods", "lora", "--tasks", "commonsense/ARC-Challenge", "--data-root", str(DATA),
                 "--max-train-examples", "8", "--max-eval-examples", "8", "--epochs", "1", "--batch-size", "4",
                 "--trials", "0", "--seeds", "1", "--store", store, "--no-progress"]) == 0
    (record,) = Store(store).records()
    assert record["status"] == "ok" and record["backbone"] == "smollm2-135m"
    assert record["settings"]["overrides"] == ["batch_size", "epochs", "max_eval_examples", "max_train_examples",
                                               "seeds", "trials"]
    assert 0 <= record["test_metric"] <= 1 and record["trainable_params"] > 0
