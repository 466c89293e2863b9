"""What Tables 3 and 4 share: their columns, their datasets, and how a spec is built."""

COLUMNS = [
    ("Teacher", None),
    ("Random sampling", "random/0"),
    ("Generator; decreasing α", "generator/decreasing"),
    ("Generator; α = 1", "generator/1"),
    ("Direct optimizer; decreasing α", "direct/decreasing"),
    ("Direct optimizer; α = 1", "direct/1"),
]

DATASETS = ["compactiv", "cpusmall", "ctscan", "indoorloc", "mv", "pole", "puma32h"]

#: Line colour and dash of each column in Figures 7 and 8: one colour per method, dashed for alpha = 1.
VARIANT_STYLES = {
    "Random sampling": ("#7f7f7f", "-"),
    "Generator; decreasing α": ("#e66100", "-"),
    "Generator; α = 1": ("#e66100", "--"),
    "Direct optimizer; decreasing α": ("#1f5fbf", "-"),
    "Direct optimizer; α = 1": ("#1f5fbf", "--"),
}


def table_spec(name: str, title: str, student: str, paper_rows: dict) -> dict:
    """A table spec for the report from rows of (mean, std) in the order of COLUMNS."""
    return dict(
        name=name, title=title, student=student, metric="test_rmse", columns=COLUMNS, datasets=DATASETS,
        paper={dataset: {label: cell for (label, _), cell in zip(COLUMNS, row)} for dataset, row in paper_rows.items()},
    )
