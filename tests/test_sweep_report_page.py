"""A sweep's report page, rebuilt from a committed ``sweep.json``: Markdown rendered (no
literal backticks), a margin and a viewport for narrow screens, each comparison listed once."""

from __future__ import annotations

import json
import re

from ss3d.sweep import load_sweep
from ss3d.sweep_report import SweepSummary, table_rows, write_sweep_report

from .conftest import REPO


def _hypotheses() -> tuple:
    spec = load_sweep(REPO / "experiments" / "sweeps" / "hypotheses.yaml")
    data = json.loads((REPO / "reports" / "sweeps" / "hypotheses" / "sweep.json").read_text())
    return spec, SweepSummary(**data)


def test_one_collection_s_f_score_is_compared_once():
    _, summary = _hypotheses()
    metrics = [row[0] for row in table_rows(summary)[1]]
    # the headline mean over one collection is that collection's per-item row, paired by seed
    # only: the per-item row (seeds and items) stays, the headline goes
    assert "collection/bird/selftrained-bird.fscore@0.05" in metrics
    assert "evaluate.collection.selftrained.fscore_0.05" not in metrics
    assert "evaluate.collection.pretrained.fscore_0.05" in metrics  # no per-item twin


def test_page_renders_markdown_and_fits_a_narrow_screen(tmp_path):
    spec, summary = _hypotheses()
    out = write_sweep_report(spec, summary, out_dir=tmp_path / "sweep", log_to_parent=False)
    page = (out / "index.html").read_text()
    text = re.sub(r"<[^>]+>", "", page.split("<body>", 1)[1])
    assert "`" not in text and "**" not in text
    assert "<code>selftrain.hypotheses=8</code>" in page and "<b>H8</b>" in page
    assert "name='viewport'" in page and "padding:0 1em" in page
    assert (out / "README.md").read_text().count("selftrained-bird.fscore@0.05") == 1
