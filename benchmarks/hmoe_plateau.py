"""Why some HoRA seeds end far worse than others on hmoe: training curves per seed.

Trains a method on an hmoe task at one learning rate with several seeds, the recipe's 1,024 steps,
and records every ``--every`` steps the training loss, the test MSE (noiseless targets: the excess
error) and the norms of each factor of the update, so a seed stuck on a plateau shows where.

    python benchmarks/hmoe_plateau.py --task independent --method hora --lr 3e-3 --seeds 6
"""

import argparse
import copy
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler  # noqa: E402

from peftbench.backbones import load_backbone  # noqa: E402
from peftbench.budget import budget_params, parse_budgets, solve  # noqa: E402
from peftbench.plan import resolve_methods, suites, with_targets  # noqa: E402
from peftbench.task import resolve_tasks  # noqa: E402
from peftbench.train import warmup_cosine  # noqa: E402


def factor_norms(model: torch.nn.Module) -> dict[str, float]:
    """The root-sum-square of each kind of trainable tensor (by the last part of its name)."""
    norms: dict[str, float] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            kind = name.split(".")[-1] if "seed" in name or name.split(".")[-1] not in ("weight", "bias") \
                else ".".join(name.split(".")[-2:])
            kind = kind.replace("default", "").strip(".")
            norms[kind] = (norms.get(kind, 0.0) ** 2 + p.detach().pow(2).sum().item()) ** 0.5
    return norms


@torch.no_grad()
def mse(model, data) -> float:
    x, y = data.tensors
    return (model(x) - y).pow(2).mean().item()


def curve(method, backbone, size, hparams, splits, seed, steps, batch, every) -> list[dict]:
    torch.manual_seed(seed)
    model = method.apply(copy.deepcopy(backbone), size, hparams)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hparams["lr"], weight_decay=hparams["weight_decay"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, 0.1))
    sampler = RandomSampler(splits.trainval, num_samples=steps * batch, generator=torch.Generator().manual_seed(seed))
    points, running = [], []
    for step, (x, y) in enumerate(DataLoader(splits.trainval, batch_size=batch, sampler=sampler), 1):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(loss.item())
        if step % every == 0 or step == steps:
            points.append({"step": step, "train_loss": sum(running) / len(running),
                           "test_mse": mse(model, splits.test), "norms": factor_norms(model)})
            running = []
    return points


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/hmoe_plateau.py", allow_abbrev=False)
    parser.add_argument("--task", default="independent", choices=["shared", "independent"])
    parser.add_argument("--method", default="hora", help="a method or variant, e.g. hora[share=none]")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--every", type=int, default=128, help="steps between points")
    parser.add_argument("--json", help="write the curves here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    [(suite, task)] = resolve_tasks(f"hmoe/{args.task}", suites())
    recipe = suite.recipe
    steps = recipe["epochs"] * recipe["epoch_samples"] // recipe["batch_size"]
    backbone = with_targets(load_backbone(recipe["backbone"]), None)
    [method] = resolve_methods(args.method).values()
    [budget] = parse_budgets("lora[r=8]")
    size = solve(method, backbone, budget_params(budget, backbone, resolve_methods("lora"))).size
    hparams = {**method.defaults, "lr": args.lr}
    splits = task.load(None, None, None, None)
    results = []
    for seed in range(args.seeds):
        points = curve(method, backbone, size, hparams, splits, seed, steps, recipe["batch_size"], args.every)
        results.append({"seed": seed, "points": points})
        print(f"seed {seed}: train loss " + " ".join(f"{p['train_loss']:.4f}" for p in points)
              + " | test mse " + " ".join(f"{p['test_mse']:.2g}" for p in points), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "size": size, "hparams": hparams,
                                               "steps": steps, "curves": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
