"""The ``peftbench`` command line."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from . import defaults
from .errors import OutOfMemory, UsageError

DEFAULT_OUT = "runs"
EXPORT_FORMATS = ("jsonl", "csv")  # peftbench.export.WRITERS
DEFAULT_BUDGET = defaults.BUDGET


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # '--seed 42' must not run 42 seeds
        super().__init__(*args, **kwargs)

    def error(self, message):  # argparse's own errors: one line and exit 2, like ours
        raise UsageError(message)


def _positive(kind, zero: bool = False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {kind.__name__}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"'{text}' must be {'zero or more' if zero else 'positive'}")
        return value
    return parse


def _workers(text):
    return text if text == "auto" else _positive(int)(text)


def _fractions(text):
    from .fractions import parse_fractions

    return parse_fractions(text)


def _targets(text):
    return tuple(filter(None, (part.strip() for part in text.split(","))))


#: what `peftbench leaderboard --format` writes
PAGE_FORMATS = ("md", "html")


def _formats(text):
    found = _targets(text)
    unknown = [f for f in found if f not in PAGE_FORMATS]
    if unknown or not found:
        raise argparse.ArgumentTypeError(f"'{text}': choose md, html or md,html")
    return found


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("peftbench")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="peftbench", description="Compare PEFT methods at equal parameter budgets.")
    parser.add_argument("--version", action="version", version=f"peftbench {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    lister = sub.add_parser("list", help="show registered methods, tasks or backbones")
    lister.add_argument("what", choices=["methods", "tasks", "backbones"], nargs="?", default="methods")
    lister.add_argument("--search-space", action="store_true",
                        help="with methods: each method's defaults and the space Optuna tunes it over")
    lister.add_argument("--capabilities", action="store_true",
                        help="with methods: each one's size knob, its size at lora[r=8] on the offline backbones, "
                             "merge, save/load, and the tuners refused with why")
    lister.add_argument("--markdown", action="store_true", help="with --capabilities: a markdown table")
    lister.add_argument("--write", metavar="FILE",
                        help="with --capabilities: put the markdown table between FILE's capability markers")

    run = sub.add_parser("run", help="train and evaluate methods on tasks; record every run")
    run.add_argument("--methods", required=True,
                     help="comma-separated methods and variants, e.g. 'hora,lora,hora[share=none]'")
    run.add_argument("--tasks", required=True, help="suites or suite/task names, e.g. quick or quick/digits")
    run.add_argument("--backbone", help="override the suite's backbone (see 'peftbench list backbones')")
    run.add_argument("--budget", default=DEFAULT_BUDGET,
                     help=f"trainable parameters: 0.3M, 300k, or a method's size like {DEFAULT_BUDGET} (the default)")
    run.add_argument("--trials", type=_positive(int, zero=True),
                     help="Optuna trials per task and method on train -> val; 0: the methods' literature "
                          "defaults (default: the suite's recipe)")
    run.add_argument("--seeds", type=_positive(int),
                     help="final runs per task and method, on train+val, tested once (default: the suite's recipe)")
    run.add_argument("--epochs", type=_positive(int), help="override the suite's epochs")
    run.add_argument("--batch-size", type=_positive(int), help="override the suite's batch size")
    run.add_argument("--image-size", type=_positive(int), help="override the suite's image size")
    run.add_argument("--max-train-examples", type=_positive(int), help="cap the training examples (small machines)")
    run.add_argument("--epoch-samples", type=_positive(int),
                     help="every epoch draws at least this many training examples (fresh permutations of a small "
                          "set), so small --fractions get as many steps as the full split (default: the recipe's)")
    run.add_argument("--max-eval-examples", type=_positive(int),
                     help="cap the validation and test examples (smoke runs; recorded, and shown on the leaderboard)")
    run.add_argument("--eval-mode", choices=["loglik", "text", "generate"],
                     help="language tasks: log-likelihood of each option's label (default) or of its text, "
                          "or generate and parse")
    run.add_argument("--targets", type=_targets,
                     help="the modules every method adapts, by role: q,k,v,o,up,down (default: the suite's "
                          "recipe, else q,v on encoders and q,k,v,up,down on Llama-family models)")
    run.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                     help="bf16 autocast or fp32; auto (the default): bf16 where the GPU or CPU computes it natively")
    run.add_argument("--device", help="this worker's device: cpu, cuda, cuda:N (default: the GPU LOCAL_RANK names, "
                                      "else the first GPU, else the CPU)")
    run.add_argument("--workers", type=_workers, default=None,
                     help="worker processes on this machine sharing the store, each with its share of the cores "
                          "and its own GPU where there are several; auto (the default): one per GPU, else one per "
                          "core (at most 4), never more than the runs left")
    run.add_argument("--fractions", type=_fractions, default=(1.0,),
                     help="train on these fractions of each training split (nested, class-stratified), e.g. "
                          "0.05,0.1,0.3,1.0, for sample-efficiency curves (default 1.0)")
    run.add_argument("--data-root", help="folder holding the suite's data")
    run.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
    run.add_argument("--store", help="results store: a SQLAlchemy URL or a file (default OUT/results.db)")
    run.add_argument("--resume", action="store_true",
                     help="continue a sweep the store already holds: finished runs are kept, interrupted ones redone")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan (runs, workers, the estimated wall time and peak memory) and stop, "
                          "writing nothing to the store")

    board = sub.add_parser("leaderboard", help="render the results store as markdown")
    board.add_argument("--store", help=f"results store (default {DEFAULT_OUT}/results.db)")
    board.add_argument("--output", "--out", dest="output",
                       help="markdown file to write, or a folder to write README.md in; results.jsonl (every "
                            "final run) and figures/ go beside it (default: leaderboard/README.md beside a "
                            f"SQLite store, else {DEFAULT_OUT}/leaderboard/README.md)")
    board.add_argument("--format", type=_formats, default=("md",),
                       help="md (the default): the markdown page with PNG figures; html: index.html beside it, one "
                            "self-contained interactive page (sortable, filterable tables, a Pareto plot with axes "
                            "to choose, each row's provenance); md,html: both from one build")
    board.add_argument("--against", default="lora", help="the method every other is compared with (default lora)")
    board.add_argument("--notes", help="a markdown file placed under the page's title: what the numbers say, what "
                                       "the page leaves out and why; its {{claims}} are filled from the store and "
                                       "checked (peftbench.notes), and one that no longer holds stops generation")

    export = sub.add_parser("export", help="write the store's runs as JSON Lines or CSV, one record per run")
    export.add_argument("--store", help=f"results store (default {DEFAULT_OUT}/results.db)")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                        help="jsonl: one JSON object per line; csv: a header row, nested fields as JSON text")
    export.add_argument("--out", default="-",
                        help="file to write, or a folder to write results.FORMAT in (default -: standard output)")
    export.add_argument("--phase", choices=("final", "tune", "all"), default="all",
                        help="final runs, tuning trials, or all (the default)")
    export.add_argument("--status", choices=("ok", "failed", "pruned", "all"), default="all",
                        help="runs that ended ok, failed or pruned, or all (the default)")

    budget = sub.add_parser("budget", help="show the size each method gets at a budget")
    budget.add_argument("--backbone", default="dinov2-s",
                        help="the backbone to size on (default: dinov2-s; see 'peftbench list backbones')")
    budget.add_argument("--budget", default=DEFAULT_BUDGET,
                        help=f"trainable parameters: 0.3M, 300k, or a method's size like {DEFAULT_BUDGET} (the "
                             f"default); several comma-separated")
    budget.add_argument("--methods", help="comma-separated (default: all registered)")
    budget.add_argument("--image-size", type=_positive(int), default=56,
                        help="image backbones at this resolution (default: 56)")
    budget.add_argument("--targets", type=_targets, help="as in run (default: the backbone family's)")

    from .bench.command import add_parser as add_bench_parser  # imports no torch: the parser stays fast
    add_bench_parser(sub)
    from .datacmd import add_parser as add_data_parser
    add_data_parser(sub)
    return parser


def cmd_list(args) -> int:
    from . import registry
    from .backbones import describe_backbones

    if args.what == "methods" and args.search_space:
        return _print_search_spaces(registry.methods())
    if args.what == "methods" and args.capabilities:
        from .capabilities import capabilities, docs_block, write_docs
        from .tables import markdown, text

        if args.write:
            write_docs(Path(args.write), docs_block(registry.methods()))
            return 0
        table = capabilities(registry.methods())
        print(markdown(table) if args.markdown else text(table))
        return 0
    if args.what == "backbones":
        rows = describe_backbones()
    elif args.what == "methods":
        found = registry.methods()
        rows = []
        for name, cls in found.loaded.items():
            rows.append((name, f"{cls.description} [{found.origin[name]}]"))
            # the variants it offers: name[option=value]
            rows += [(f"  [{option}=]", " | ".join(str(v) for v in values) + f" (default {cls.defaults.get(option)})")
                     for option, values in cls.options.items()]
        rows += [(name, f"BROKEN: {why}") for name, why in found.broken.items()]
        rows += [(name, f"refused: {why}") for name, why in found.refused.items()]
    else:
        found = registry.tasks()
        rows = []
        for name, suite in found.loaded.items():
            rows.append((name, f"{suite.description} [{found.origin[name]}]"))
            rows += [(f"  {t.id}", f"{t.group}, " + (f"{t.num_classes} classes, " if t.num_classes else "") + t.metric)
                     for t in suite.tasks]
        rows += [(name, f"BROKEN: {why}") for name, why in found.broken.items()]
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    return 0


def _print_search_spaces(found) -> int:
    from .tuning import LEARNING_RATE, defaults, describe_space

    print(f"Shared by every method: lr and head_lr log-uniform [{LEARNING_RATE[0]:g}, {LEARNING_RATE[1]:g}], "
          "weight_decay log-uniform; the first trial of every study tries the defaults, which --trials 0 runs.")
    print("head_lr applies where the task trains a classifier head; a method that trains nothing in the "
          "backbone has no lr.\n")
    for name, cls in found.loaded.items():
        method = cls()
        print(f"{name}:")
        chosen = defaults(method, head=True)
        for key, space in describe_space(method).items():
            print(f"  {key:<14} {space:<32} default {chosen.get(key, '-')}")
        fixed = {k: v for k, v in chosen.items() if k not in describe_space(method)}
        if fixed:
            print("  fixed          " + ", ".join(f"{k}={v}" for k, v in fixed.items()))
    return 0


def _metric(record: dict, field: str) -> str:
    value = record.get(field)
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if record["metric"] == "accuracy" else f"{value:.4g}"


def _results_table(records: list[dict]) -> str:
    import pandas as pd

    from .tables import text

    shares = any(r["data_fraction"] < 1 for r in records)  # a fraction column only for curves
    rows = []
    for r in records:
        ok = r["status"] == "ok"
        tune = r["phase"] == "tune" and "slot" in r["details"]
        row = {"task": f"{r['suite']}/{r['task']}", "method": r["method"]}
        if shares:
            row["fraction"] = f"{r['data_fraction']:g}"
        rows.append({**row, "phase": f"trial {r['details']['slot'] + 1}" if tune else f"seed {r['seed']}",
                     "trainable": f"{r['trainable_params']:,}" if ok else None,
                     "val": _metric(r, "val_metric"), "test": _metric(r, "test_metric"),
                     "train/s": f"{r['train_samples_per_s']:.0f}" if ok else None,
                     "eval/s": f"{r['eval_samples_per_s']:.0f}" if ok and r["eval_samples_per_s"] is not None else None,
                     "status": r["status"] if ok else f"{r['status']}: {r['error']}"})
    return text(pd.DataFrame(rows))


def _worker_count(workers, runs_left: int, placed: bool = False) -> int:
    """``placed``: --device or LOCAL_RANK put this process on its device, so by default it is one worker."""
    from . import defaults

    if workers is None and placed:
        return 1
    if workers is None:
        try:
            workers = _workers(defaults.WORKERS)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise UsageError(f"PEFTBENCH_WORKERS: {exc}") from None
    if workers != "auto":
        return workers
    import torch

    from .workers import auto_workers

    return auto_workers(torch.cuda.device_count(), os.cpu_count() or 1, runs_left)


def _without_workers(argv: list[str]) -> list[str]:
    """The run's arguments for its workers: the same, less the parent's --workers."""
    out, skip = [], False
    for item in argv[1:]:  # after "run"
        if skip:
            skip = False
        elif item == "--workers":
            skip = True
        elif not item.startswith("--workers="):
            out.append(item)
    return out


def cmd_run(args) -> int:
    from .registry import check_names

    check_names(args.methods, args.tasks, args.budget)  # before torch loads: a bad name fails at once
    from .hubdata import require

    require(args.tasks, args.data_root)  # vtab/fgvc data neither given, cached nor reachable: one line, exit 2
    started = time.perf_counter()
    from .envinfo import STARTED_ENV, sweep_marked

    worker = STARTED_ENV in os.environ  # started by a parent sweep, which printed the plan
    with sweep_marked(shlex.join(["peftbench", *args.argv])):
        return _run(args, None if worker else started)


def _run(args, started: float | None = None) -> int:
    """``started``: when the command started, to print the plan and its estimate; None in a worker."""
    from .runner import RunOptions, Sweep
    from .store import Store, beside

    location = args.store or str(Path(args.out) / "results.db")
    options = RunOptions(
        backbone=args.backbone, budget=args.budget, seeds=args.seeds, trials=args.trials, epochs=args.epochs,
        batch_size=args.batch_size, image_size=args.image_size, data_root=args.data_root,
        max_train_examples=args.max_train_examples, max_eval_examples=args.max_eval_examples,
        epoch_samples=args.epoch_samples,
        eval_mode=args.eval_mode, targets=args.targets, precision=args.precision, device=args.device,
        fractions=args.fractions,
        adapters_dir=str(beside(location, args.out) / "adapters"),
        resume=args.resume, progress=not args.no_progress,
    )
    sweep = Sweep(args.methods, args.tasks, options)
    plan = sweep.plan(stand_ins=True)  # bad input fails here, before the store is opened or data downloaded
    keys = {unit.key for unit in plan.units()}
    if args.dry_run:
        from .store import peek_finished

        done = peek_finished(location) & keys
    else:
        store = Store(location)
        sweep.check_resume(store)  # before the plan's timed steps
        done = store.finished() & keys
    workers = _worker_count(args.workers, len(keys - done),
                            placed=args.device is not None or "LOCAL_RANK" in os.environ)
    if started is not None:
        from .preview import show_plan

        show_plan(plan, keys - done, workers, time.perf_counter() - started, len(done), args.resume)
    if args.dry_run:
        return 0
    sweep.fetch_data()
    if workers == 1:
        records = [record.row() for record in sweep.run(store)]
    else:
        from .workers import run_workers

        before = {r["run_id"] for r in store.records()}
        run_workers(_without_workers(args.argv), workers)
        keys = {unit.key for unit in plan.units()}
        records = [r for r in store.records() if r["spec_key"] in keys and r["run_id"] not in before]
    print(_results_table(records) if records else "nothing to run: every run is already in the store")
    print(f"\n{len(records)} run(s) recorded in {store.url}")
    return 1 if any(r["status"] == "failed" for r in records) else 0


def _output(given: str, name: str) -> Path:
    """The file to write: ``given``, or ``name`` inside it when it is a folder (an existing one, or a
    path ending in /)."""
    if given.endswith(("/", os.sep)) or Path(given).is_dir():
        return Path(given) / name
    return Path(given)


def _make_folder(folder: Path, out: Path) -> list[Path]:
    """Create ``folder`` and the missing folders above it; the ones created, outermost first.
    Raises UsageError, creating nothing, when ``out`` cannot be written there."""
    missing = []
    above = folder
    while not above.exists() and above != above.parent:
        missing.append(above)
        above = above.parent
    if not above.is_dir():
        raise UsageError(f"cannot write {out}: {above} is a file, not a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {out}: {above} is not writable")
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except OSError as exc:
            _remove(created)
            raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from exc
        created.append(path)
    return created


def _remove(created: list[Path]) -> None:
    """Undo _make_folder: everything under the outermost folder it created was written by us."""
    if created:
        import shutil

        shutil.rmtree(created[0], ignore_errors=True)


def _not_a_folder(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            raise UsageError(f"cannot write {path}: it is a folder")


def _read_notes(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --notes {path}: {getattr(exc, 'strerror', None) or exc}") from None


def cmd_leaderboard(args) -> int:
    from .board import build, html, markdown
    from .export import write_jsonl
    from .notes import fill
    from .store import Store, beside

    location = args.store or str(Path(DEFAULT_OUT) / "results.db")
    # never ./leaderboard/README.md unless asked for: that is where the published page lives
    out = (beside(location, DEFAULT_OUT) / "leaderboard" / "README.md" if args.output is None
           else _output(args.output, "README.md"))
    pages = {}
    if "md" in args.format:
        pages[out] = markdown.render
    if "html" in args.format:
        pages[out if out.suffix == ".html" else out.with_name("index.html")] = (
            lambda board: html.render(board, out.parent))
    results = out.parent / "results.jsonl"
    _not_a_folder(*pages, results)
    notes = _read_notes(args.notes)
    store = Store(location, create=False)
    if notes:
        notes = fill(notes, store, args.against)  # before anything is written: a failed claim stops here
    created = _make_folder(out.parent, out)
    temporary = {path: path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in pages}
    try:
        for tmp in temporary.values():
            tmp.write_text("")  # the folder takes files, before any figure is drawn
        board = build.build(store, out, against=args.against, notes=notes)
        texts = {path: render(board) for path, render in pages.items()}
        for path, text in texts.items():
            temporary[path].write_text(text)
        count = write_jsonl(store.records(phase="final"), results)
        for path, tmp in temporary.items():
            os.replace(tmp, path)
    except BaseException as exc:
        _remove(created)  # nothing half-written, whatever stopped it
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from exc
        raise
    finally:
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)
    if out in texts:
        print(texts[out])
    written = " and ".join(str(path) for path in pages)
    print(f"written to {written}, with {results.name} ({count} final run(s)) beside it")
    return 0


def cmd_export(args) -> int:
    from .export import WRITERS
    from .store import Store

    location = args.store or str(Path(DEFAULT_OUT) / "results.db")
    out = None if args.out == "-" else _output(args.out, f"results.{args.format}")
    if out is not None:
        _not_a_folder(out)
    store = Store(location, create=False)
    where = {key: value for key, value in (("phase", args.phase), ("status", args.status)) if value != "all"}
    records = store.records(**where)
    if out is None:
        try:
            WRITERS[args.format](records, "-")
        except BrokenPipeError:  # the reader stopped early (| head): no error, no traceback at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    created = _make_folder(out.parent, out)
    try:
        count = WRITERS[args.format](records, out)
    except BaseException as exc:
        _remove(created)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from exc
        raise
    print(f"{count} run(s) written to {out}")
    return 0


def cmd_budget(args) -> int:
    from . import registry
    from .backbones import load_backbone
    import pandas as pd

    from .budget import budget_params, parse_budgets
    from .plan import Refusal, resolve_methods, size_method, with_targets
    from .tables import text

    budgets = parse_budgets(args.budget)
    names = args.methods or ",".join(registry.methods().loaded)
    methods = resolve_methods(names)
    backbone = with_targets(load_backbone(args.backbone, args.image_size), args.targets)
    failed, refusals, tables = False, [], []
    for number, budget in enumerate(budgets):
        target = budget_params(budget, backbone, resolve_methods(budget.method) if budget.method else {})
        tables.append(("\n" if number else "") + f"budget {budget.text} = {target:,} trainable parameters on "
                      f"{backbone.name} (head excluded), targets {','.join(backbone.target_roles)}")
        rows = []
        for name, method in methods.items():
            try:
                sizing, error = size_method(method, backbone, target)
            except Refusal as exc:  # the method declines this backbone or budget; the others are sized
                rows.append({"method": name, "size": None, "trainable": None, "of budget": None,
                             "": f"refused: {exc}"})
                refusals.append(str(exc))
                continue
            failed = failed or error is not None
            note = (f"failed: {error}" if error else f"fixed size: {fixed_why(method)}" if not method.knobs
                    else "" if sizing.reached else f"† cannot land within 1%: {missed_why(method, backbone, target)}")
            size = ", ".join(f"{k}={v}" for k, v in sizing.size.items()) or "fixed"
            rows.append({"method": name, "size": None if error else size,
                         "trainable": None if error else f"{sizing.count:,}",
                         "of budget": None if error else f"{sizing.count / target:.1%}", "": note})
        tables.append(text(pd.DataFrame(rows)))
    if len(refusals) == len(methods) * len(budgets):
        raise UsageError(refusals[0])  # nothing could be sized: the refusal is the answer
    print("\n".join(tables))
    return 1 if failed else 0


def missed_why(method, backbone, target: int) -> str:
    """Why the solver took a size below the budget: the next size up overshoots it, or there is none."""
    from .budget import TOLERANCE

    size = next((size for size in method.near(backbone, target)
                 if method.count(backbone, size) > target * (1 + TOLERANCE)), None)
    if size is None:
        return "its largest size is below the budget"
    count = method.count(backbone, size)
    shown = ", ".join(f"{k}={v}" for k, v in size.items())
    return f"the next size up, {shown}, is {count / target:.1%}"


def fixed_why(method) -> str:
    """Why a method without a size knob is off the budget: a reference point (the probe, full
    fine-tuning) or a tuner whose count its architecture fixes (IA3, LN tuning)."""
    from .method import PeftMethod

    return "its own count, labelled fixed" if isinstance(method, PeftMethod) else "a reference point"


def cmd_bench(args) -> int:
    from .bench.command import cmd_bench as bench

    return bench(args)


def cmd_data(args) -> int:
    from .datacmd import cmd_data as data

    return data(args)


COMMANDS = {"list": cmd_list, "run": cmd_run, "leaderboard": cmd_leaderboard, "export": cmd_export,
            "budget": cmd_budget, "bench": cmd_bench, "data": cmd_data}


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser().parse_args(argv)
        args.argv = argv
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"peftbench: error: {exc}", file=sys.stderr)
        return 2
    except OutOfMemory as exc:
        print(f"peftbench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\npeftbench: interrupted; finished runs are in the store, rerun with --resume to continue",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
