"""One syntax for methods with options or sizes, variants as methods of their own, and recipes
validated with the suite named."""

import pytest

from peftbench.budget import parse_budget
from peftbench.errors import UsageError
from peftbench.plan import resolve_methods
from peftbench.recipe import Recipe
from peftbench.records import RunRecord
from peftbench.spec import MethodSpec, parse_spec, parse_specs
from peftbench.store import FIELDS


@pytest.mark.parametrize("text,name,options", [
    ("lora", "lora", {}),
    ("hora[share=none]", "hora", {"share": "none"}),
    ("hora[r=8,hidden=16]", "hora", {"r": 8, "hidden": 16}),
    ("lora:r=8", "lora", {"r": 8}),
    (" adapter[ style = pfeiffer ] ", "adapter", {"style": "pfeiffer"}),
])
def test_a_spec_reads_the_same_in_either_form(text, name, options):
    assert parse_spec(text) == MethodSpec(name, options)


def test_lists_keep_the_commas_inside_brackets():
    specs = parse_specs("lora,hora[share=none,seeds=separate],dora")
    assert [str(s) for s in specs] == ["lora", "hora[share=none,seeds=separate]", "dora"]


@pytest.mark.parametrize("text", ["lora[", "lora[r]", "lora[r=]", "lora[r=1,r=2]", "1lora", "lora[=3]", "a,b]"])
def test_malformed_specs_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_specs(text)


def test_a_budget_reference_takes_the_same_syntax():
    assert parse_budget("lora[r=8]").size == parse_budget("lora:r=8").size == {"r": 8}
    with pytest.raises(UsageError, match="cannot parse budget"):
        parse_budget("lora[r=eight]")


def test_a_variant_is_a_method_of_its_own_with_its_own_count():
    from peftbench.backbones import load_backbone

    methods = resolve_methods("hora,hora[share=none],hora[seeds=separate]")
    assert list(methods) == ["hora", "hora[share=none]", "hora[seeds=separate]"]
    backbone = load_backbone("tiny-vit")
    counts = {name: m.count(backbone, {"r": 4}) for name, m in methods.items()}
    lora = resolve_methods("lora")["lora"].count(backbone, {"r": 4})
    assert counts["hora[share=none]"] == lora  # MH-LoRA: per-head LoRA, LoRA's count
    assert counts["hora[seeds=separate]"] > lora  # LoRA's plus the generators
    assert len(set(counts.values())) == 3
    assert methods["hora[share=none]"].defaults["share"] == "none" and methods["hora"].defaults["share"] == "heads"


def test_the_b_projection_axis_is_a_variant_counted_exactly():
    import copy

    from peftbench.backbones import load_backbone
    from peftbench.contracts import trainable

    backbone = load_backbone("tiny-vit")
    methods = resolve_methods("hora[axis=head_dim],hora[axis=head_dim,proj_axis=generator]")
    size = {"r": 4, "hidden": 16}
    counts = [m.count(backbone, size) for m in methods.values()]
    real = [sum(p.numel() for p in trainable(m.apply(copy.deepcopy(backbone), size, m.defaults)))
            for m in methods.values()]
    assert counts == real and counts[1] > counts[0]  # P_B on g_B's axis: d_h x d_h instead of r x r


@pytest.mark.parametrize("text,message", [
    ("hora[shares=none]", "hora has no option 'shares' (its options: share, seeds, axis, proj_axis, activation)"),
    ("hora[share=all]", "share is one of heads, none, qv"),
    ("lora[dropout=0.1]", "lora has no option 'dropout' (its options: none)"),
    ("lorra", "did you mean 'lora'?"),
])
def test_bad_variants_name_the_valid_choices(text, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        resolve_methods(text)


def test_a_recipe_rejects_an_unknown_setting_naming_the_suite():
    with pytest.raises(UsageError, match=r"suite 'mine': unknown recipe setting 'epoch' \(did you mean 'epochs'\?\)"):
        Recipe.build("mine", {"epoch": 5}, {})


@pytest.mark.parametrize("recipe,message", [
    ({"epochs": 0}, "epochs 0 must be a positive whole number"),
    ({"batch_size": "32"}, "batch_size '32' must be"),
    ({"trials": -1}, "trials -1 must be zero or more"),
    ({"eval_mode": "vibes"}, "eval_mode 'vibes' is not one of"),
])
def test_a_recipe_rejects_bad_values(recipe, message):
    with pytest.raises(UsageError, match=message):
        Recipe.build("mine", recipe, {})


def test_overrides_win_and_are_listed():
    recipe = Recipe.build("quick", {"epochs": 3, "trials": 2}, {"epochs": 1, "seeds": None})
    assert (recipe.epochs, recipe.trials, recipe.overrides) == (1, 2, ("epochs",))
    assert recipe.settings()["overrides"] == ["epochs"]


def test_every_built_in_suite_recipe_is_valid():
    from peftbench import registry

    for name, suite in registry.tasks().loaded.items():
        Recipe.build(name, suite.recipe, {})


def test_the_run_record_mirrors_the_store_table():
    assert list(RunRecord.__dataclass_fields__) == FIELDS


def test_several_budgets_keep_the_brackets_together():
    from peftbench.budget import parse_budgets

    assert [b.text for b in parse_budgets("30k,hora[r=8,hidden=16],0.6M")] == ["30k", "hora[r=8,hidden=16]", "0.6M"]
    with pytest.raises(UsageError, match="twice"):
        parse_budgets("30k,30k")
