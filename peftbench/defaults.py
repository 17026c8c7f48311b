"""Defaults that name plugins, kept out of the engine: each can be changed by an environment
variable, so a lab whose reference method is not LoRA sets it once."""

import os

#: the budget every comparison uses unless told: a reference method's size, or a parameter count
BUDGET = os.environ.get("PEFTBENCH_BUDGET", "lora[r=8]")
#: what `peftbench bench` measures: the reference its ratios divide by, the methods beside it, the
#: method whose step time the benchmark holds to the reference's at equal rank, and the linear probe
BENCH_REFERENCE = os.environ.get("PEFTBENCH_BENCH_REFERENCE", "lora")
BENCH_METHODS = os.environ.get("PEFTBENCH_BENCH_METHODS", "lora,hora,dora,vera,adapter")
BENCH_CHALLENGER = os.environ.get("PEFTBENCH_BENCH_CHALLENGER", "hora")
PROBE = os.environ.get("PEFTBENCH_PROBE", "linear")
#: worker processes `peftbench run` starts unless told (`--workers`): a number, or auto
WORKERS = os.environ.get("PEFTBENCH_WORKERS", "auto")
