"""Paper artefacts: one module per table, each naming its records and the paper's numbers.

These modules hold data only. ``python -m dfkd.report`` discovers every
``table*.py`` here and reads its module-level ``TABLE``.
"""
