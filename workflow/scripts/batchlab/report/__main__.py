"""PYTHONPATH=workflow/scripts python -m batchlab.report dvc-template PATH: DVC's plots page
with Vega inline."""

import sys

from batchlab.report.page import dvc_plots_template, vega_bundle

if len(sys.argv) != 3 or sys.argv[1] != "dvc-template":
    sys.exit("usage: python -m batchlab.report dvc-template PATH")
with open(sys.argv[2], "w") as handle:
    handle.write(dvc_plots_template(vega_bundle()))
