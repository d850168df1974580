"""The study report: one module per section, each a function of the study's inputs
(batchlab.report.inputs) that returns its Section or None when the study has nothing for it.

Numbers are computed upstream (aggregate: batchlab.analysis.summaries, batchlab.analysis.verdicts, the fits);
a section formats them (batchlab.report.fmt) and draws charts with the shared encodings
(batchlab.report.encodings, batchlab.report.charts). The page is a template
(batchlab.report.page). A section is added by writing its module and listing it in SECTIONS.
"""

from __future__ import annotations

from batchlab.report import (
    answers,
    changes,
    convergence,
    equal_updates,
    findings,
    gradient,
    loss_curves,
    lr_grid,
    lr_response,
    method,
    noise,
    optimizers,
    oscillation,
    remedies,
    sharpness,
    solution2,
    speed,
    targets,
    verdict_details,
)
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section, render_html, vega_bundle

# the page's order: the answers first, then the evidence, then the details
SECTIONS = [
    answers,
    verdict_details,
    findings,
    lr_response,
    lr_grid,
    targets,
    optimizers,
    loss_curves,
    oscillation,
    speed,
    convergence,
    noise,
    gradient,
    equal_updates,
    remedies,
    solution2,
    sharpness,
    method,
    changes,
]


def build_sections(study: Inputs) -> list[Section]:
    return [s for module in SECTIONS if (s := module.section(study)) is not None]


__all__ = ["Inputs", "Section", "build_sections", "render_html", "vega_bundle"]
