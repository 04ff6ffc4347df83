"""The book's build pipeline: execute chapters with papermill (cached on what determines their output),
stage the executed notebooks, and generate the reproduction-status page. Run ``python -m pipeline --help``.
"""
