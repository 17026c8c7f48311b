"""Speed and memory of the methods side by side, against the physical floor (``peftbench bench``).

Everything is measured in one process on the same batches, and compared as ratios of medians
(method / reference, method / floor, merged / base), which carry over between machines where
absolute figures do not. The reference (LoRA), the challenger held to it at equal rank (HoRA), the
probe (linear), the methods and the budget default to peftbench.defaults.

- workload: random batches, and the backbone's loss and output on them
- contenders: the methods sized to the budget, the probe and the floor
- measure: training steps and inference, interleaved; peak memory
- overhead: a real sweep through peftbench.runner against what its steps cost
- summary: ratios and targets; report: text and markdown
- benchmark: all of it, in order; command: the ``bench`` subcommand

No module here imports torch (or peftbench.cli) when imported: the command line builds its
parser from ``command``.
"""

from .benchmark import run_bench
from .command import add_parser, cmd_bench
from .contenders import Contender, InputGrad, contenders, first_block, floor_model, parse_methods, sized_methods
from .measure import max_abs_diff, measure_inference, measure_memory, measure_training, train_step
from .overhead import DEFAULT_RUN_TASK, measure_run, parse_run_options
from .report import format_report, markdown
from .summary import TARGETS, measured, paired_ratio, summarise
from .workload import NUM_CLASSES, Workload, image_workload, text_workload

__all__ = ["DEFAULT_RUN_TASK", "NUM_CLASSES", "TARGETS", "Contender", "InputGrad", "Workload", "add_parser",
           "cmd_bench", "contenders", "first_block", "floor_model", "format_report", "image_workload", "markdown",
           "max_abs_diff", "measure_inference", "measure_memory", "measure_run", "measure_training", "measured",
           "paired_ratio", "parse_methods", "parse_run_options", "run_bench", "sized_methods", "summarise",
           "text_workload", "train_step"]
