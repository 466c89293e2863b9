"""What Tables 3 and 4 (and Figures 7 and 8) share: their columns' variants, labels and line styles, their
datasets and the claims of SPEC section 5 that they test.

A column is one dict: ``variant`` (the config's ``variant=<name>``, the records' ``variant`` and their folder
``<method>-<alpha label>``; None for the teacher), ``label`` (table header and figure legend), ``color`` and
``dash`` (its line in Figures 7 and 8) and, added by each table, ``paper`` (``{dataset: (mean, std)}``).
"""

TEACHER = dict(variant=None, label="Teacher")
RANDOM = dict(variant="random-0", label="Random sampling", color="#7f7f7f", dash="-")
GENERATOR_DECREASING = dict(variant="generator-decreasing", label="Generator; decreasing α", color="#e66100", dash="-")
GENERATOR_ONE = dict(variant="generator-1", label="Generator; α = 1", color="#e66100", dash="--")
DIRECT_DECREASING = dict(variant="direct-decreasing", label="Direct optimizer; decreasing α", color="#1f5fbf",
                         dash="-")
DIRECT_ONE = dict(variant="direct-1", label="Direct optimizer; α = 1", color="#1f5fbf", dash="--")

#: The tables' rows, alphabetical as the paper prints them.
DATASETS = ["compactiv", "cpusmall", "ctscan", "indoorloc", "mv", "pole", "puma32h"]

# The claims of SPEC section 5 that Tables 3/4 test. "beats": a < b. "degrades": a (alpha = 1) against
# b (decreasing alpha), by relative change.
CLAIMS = [
    dict(kind="beats", a="direct-decreasing", b="random-0",
         text="Direct optimizer (decreasing α) beats random sampling", spec="6 of 7"),
    dict(kind="beats", a="direct-decreasing", b="generator-decreasing",
         text="Direct optimizer (decreasing α) beats the generator (decreasing α)", spec="5 of 7"),
    dict(kind="degrades", a="generator-1", b="generator-decreasing",
         text="With α = 1 the generator degrades: generator-1 against generator-decreasing",
         spec="degrades badly"),
    dict(kind="degrades", a="direct-1", b="direct-decreasing",
         text="With α = 1 direct optimization holds up: direct-1 against direct-decreasing",
         spec="does not degrade"),
]


def column(base: dict, **paper) -> dict:
    """``base`` (one of the columns above) with its paper numbers: ``column(RANDOM, compactiv=(0.1588, 0.005), ...)``."""
    return dict(base, paper=paper)
