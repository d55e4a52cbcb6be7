"""Reports a reader opens without running anything: ``reports/<experiment>/``.

``ss3d report --config experiments/X.yaml`` (and the end of ``ss3d pipeline``) writes

* ``index.html`` — metric tables per stage × category with the baselines, pose accuracy,
  student/teacher ratios, pre-training validation, figures, turntables, the MLflow run id of
  every stage, the pipeline's wall times, and links to the executed notebooks;
* ``README.md`` — the same tables in Markdown (GitHub renders it);
* ``figures/*.png``, ``turntables/*.gif``, ``notebooks/*.html`` (nbconvert).

Inputs: the latest evaluation (MLflow run, else ``<output_dir>/<name>/evaluate/``), the latest
run of every stage, and the executed notebooks in ``<output_dir>/<name>/notebooks/``. The report
is built in a temporary folder and swapped in at the end: a failure never leaves half a report.
"""

from __future__ import annotations

import html
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from ss3d import tracking
from ss3d.config import ExperimentConfig
from ss3d.eval.summary import PRIMARY, fmt, half_widths, tables
from ss3d.eval.verdict_table import Verdict, verdict_rows
from ss3d.files import inside, replacing_dir
from ss3d.stages.shell import stage_dir

__all__ = ["MissingEvaluationError", "write_report"]

STAGES = (("render", None), ("pretrain", None), ("selftrain", "per category"),
          ("selftrain-ablation", "per category"), ("distill", None), ("evaluate", None))
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.2em auto;padding:0 1em;
color:#222;line-height:1.35}h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1em 0 .4em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}td,th{border:1px solid #ccc;
padding:3px 8px;text-align:right}td:first-child,td:nth-child(2),th{text-align:left}
tr.baseline td{color:#777;font-style:italic}img{max-width:100%;height:auto}
table.verdicts td{text-align:left}table.verdicts tr.good td:last-child{color:#060}
table.verdicts tr.bad td:last-child{color:#a40}.gifs{display:flex;flex-wrap:wrap;gap:8px}
.gifs figure{margin:0}figure{margin:.5em 0}figcaption,.small{font-size:12px;color:#555}
figcaption{max-width:640px}.scroll{overflow-x:auto;max-width:100%}code{background:#f3f3f3;
padding:1px 4px}.note{color:#a40;font-size:14px}details{margin:.3em 0;border-top:1px solid #e4e4e4;
padding-top:.3em}summary{cursor:pointer;font-weight:600}
@media (max-width:600px){body{padding:0 .6em;margin-top:.6em}td,th{padding:2px 5px}}"""
VERDICT_NOTE = ("Δ: a paired difference on the same test items (mean [95% bootstrap "
                "interval]); a verdict needs the interval to exclude 0. Poses: Wilson "
                "intervals. Every table behind these rows is in the sections below.")
# what each figure shows, for its caption (figures not listed get their file name)
FIGURE_CAPTIONS = {
    "fscore_categories": "F@0.05 per category: every model's mean with its 95% interval, "
                         "the baselines in grey.",
    "reconstructions_synthetic": "Held-out synthetic models: input image, ground truth and "
                                 "each model's mesh from the same view.",
    "reconstructions_collection": "Collection test photos: input crop, the hidden ground-truth "
                                  "model and each model's mesh.",
}
RATIO_AIM = 0.95  # distillation: student F@0.1 at least this fraction of the teacher's


NOTEBOOK_CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:1em auto;
padding:0 1em}.jp-InputArea,.input_area,pre{background:#f6f6f6}.jp-InputPrompt,.jp-OutputPrompt
{display:none}pre{padding:6px;overflow-x:auto;font-size:12px}.jp-Cell{margin:.6em 0}
img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}
.jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr'] pre{color:#777}"""


BASELINES_TEXT = (
    "Metrics: F-score at 0.02, 0.05 and 0.1 and Chamfer-L1 on surface samples in the unit "
    "object cube; volumetric IoU on inside/outside samples; mask IoU, PSNR and colour spread "
    "of novel views (colour spread: the predicted over the true standard deviation of the "
    "object's colours, 1 when they vary as in the truth, near 0 for one grey). Every cell is "
    "the mean over test items with its 95% bootstrap interval; pose accuracies "
    "carry Wilson intervals. Baselines (grey rows): a sphere of the mean object size, the "
    "category's medoid training shape (one shape for every input) and the oracle nearest "
    "training shape (the best training shape for each test item, chosen with the answer in "
    "hand: the upper bound of any retrieval method). A model that does not beat the medoid "
    "has not shown that it reads the image.")


class MissingEvaluationError(FileNotFoundError):
    """No evaluation results yet: says what to run."""


def _evaluation_dir(cfg: ExperimentConfig, track: bool) -> tuple[Path, str | None]:
    if track:
        run = tracking.latest_run(cfg.name, "evaluate")
        if run is not None:
            try:
                path = tracking.artifact_path(run, "evaluation.json")
            except Exception:  # artifacts gone (e.g. deleted store folder): use the local copy
                path = None
            if path is not None and path.is_file():
                local = stage_dir(cfg, "evaluate")
                return (local if (local / "evaluation.json").is_file() else path.parent,
                        run.info.run_id)
    local = stage_dir(cfg, "evaluate")
    if (local / "evaluation.json").is_file():
        return local, None
    raise MissingEvaluationError(
        f"no evaluation of experiment '{cfg.name}': run notebooks/04_evaluate.ipynb (or "
        f"`ss3d evaluate --config <experiment>.yaml`) first")


def _stage_runs(cfg: ExperimentConfig, track: bool) -> list[dict[str, Any]]:
    if not track:
        return []
    rows = []
    categories = list(dict.fromkeys(cfg.data.collections))
    for stage, per_category in STAGES:
        for category in (categories if per_category else [None]):
            run = tracking.latest_run(cfg.name, stage, category=category)
            if run is None:
                continue
            rows.append({"stage": stage, "category": category or "", "run_id": run.info.run_id,
                         "experiment_id": run.info.experiment_id,
                         "wall_seconds": run.data.metrics.get("wall_seconds"),
                         "metrics": run.data.metrics})
    return rows


def _caption(path: str) -> str:
    stem = Path(path).stem
    for prefix, text in FIGURE_CAPTIONS.items():
        if stem.startswith(prefix):
            detail = stem[len(prefix):].strip("_").replace("_", " ")
            return f"{text}{f' ({detail})' if detail else ''}"
    return stem.replace("_", " ")


def _mlflow_link(run: dict[str, Any]) -> str:
    """The run id, linked to the run's page in a local `make ui` (http://127.0.0.1:5000)."""
    return (f"<a href='{tracking.ui_url(run['experiment_id'], run['run_id'])}'><code>"
            f"{run['run_id']}</code></a>")


AGREEMENT_FLOOR = 0.8  # agreement with the model the student starts from: flagged below this


def _warnings(data: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    """What needs a reader's attention, one line per kind with its categories listed.

    Agreement: a category whose teacher is the pre-trained model the student starts from
    agrees 1.000 before distillation by construction (the student is its teacher), so a drop
    from there is not news; only a fall below :data:`AGREEMENT_FLOOR` is. A category taught by
    another model (a self-trained specialist) is flagged when agreement dropped at all."""
    notes = []
    low = [r for r in data.get("ratios", []) if r.get("ratio", 1.0) < RATIO_AIM]
    if low:
        notes.append(f"Distillation below the aim (student/teacher F@0.1 ≥ {RATIO_AIM}) on "
                     f"{len(low)} of {len(data['ratios'])}: " + ", ".join(
                         f"{r['set']} {r['category']} {r['ratio']:.2f}" for r in low) + ".")
    agreement = _agreement(runs)
    started = [(c, a) for c, b, a in agreement if b >= 0.999 and a < AGREEMENT_FLOOR]
    if started:
        notes.append(f"The student drifted from the pre-trained model it started from (agreement "
                     f"below {AGREEMENT_FLOOR} after distillation) on {len(started)} "
                     f"categor{'y' if len(started) == 1 else 'ies'}: " + ", ".join(
                         f"{c} {fmt(a)}" for c, a in sorted(started, key=lambda x: x[1])) + ".")
    dropped = [(c, b, a) for c, b, a in agreement if b < 0.999 and a < b]
    if dropped:
        notes.append("Student–teacher agreement dropped during distillation on "
                     f"{len(dropped)} categor{'y' if len(dropped) == 1 else 'ies'}: " + ", ".join(
                         f"{c} {fmt(b)} → {fmt(a)}" for c, b, a in dropped) + ".")
    if data.get("skipped"):
        notes.append("Not evaluated: " + "; ".join(data["skipped"]) + ".")
    return notes


def html_table(header: list[str], rows: list[list[str]], classes: list[str] | None = None
                ) -> str:
    out = ["<div class='scroll'><table><tr>" +
           "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def _convert_notebooks(source: Path, target: Path) -> list[Path]:
    """Executed notebooks → standalone HTML (nbconvert), in pipeline order."""
    if not source.is_dir():
        return []
    from nbconvert import HTMLExporter

    # nbconvert's "basic" template (cells, outputs, embedded figures) in a small page of our
    # own: the full "lab" template adds ~300 KB of CSS and scripts to every committed file.
    exporter = HTMLExporter(template_name="basic")
    target.mkdir(parents=True, exist_ok=True)
    return [notebook_html(nb_path, target / f"{nb_path.stem}.html", exporter)
            for nb_path in sorted(source.glob("*.ipynb"))]


def notebook_html(nb_path: Path, out: Path, exporter: Any = None) -> Path:
    """One executed notebook as a standalone HTML page (what MLflow and the report show)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = exporter or HTMLExporter(template_name="basic")
    # nbconvert warns on every figure without alt text (matplotlib output has none)
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
    out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
                   f"content='width=device-width, initial-scale=1'><title>"
                   f"{html.escape(nb_path.stem)}</title><style>{NOTEBOOK_CSS}</style>"
                   f"</head><body>{body}</body></html>", encoding="utf-8")
    return out


def write_report(cfg: ExperimentConfig, *, out_dir: str | Path | None = None,
                 notebooks_dir: str | Path | None = None, track: bool = True) -> Path:
    """Write ``reports/<name>/`` (or ``out_dir``); returns the path of ``index.html``."""
    evaluation_dir, eval_run = _evaluation_dir(cfg, track)
    data = json.loads((evaluation_dir / "evaluation.json").read_text())
    tables_md = (evaluation_dir / "tables.md").read_text() \
        if (evaluation_dir / "tables.md").is_file() else ""
    final = Path(out_dir) if out_dir else inside(tracking.repo_root() / "reports", cfg.name)
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else \
        stage_dir(cfg, "notebooks")
    with replacing_dir(final) as tmp:  # a killed report's half-written folder goes too
        figures = []
        (tmp / "figures").mkdir()
        # local evaluation folder: *.png; MLflow artifact folder: figures/*.png
        if _categories_figure(data["summary"], tmp / "figures" / "fscore_categories.png"):
            figures.append("figures/fscore_categories.png")
        for png in sorted([*evaluation_dir.glob("*.png"),
                           *evaluation_dir.glob("figures/*.png")]):
            if png.stem.startswith("fscore_"):  # drawn above, from the summary
                continue
            shutil.copy2(png, tmp / "figures" / png.name)
            figures.append(f"figures/{png.name}")
        gifs = []
        if (evaluation_dir / "turntables").is_dir():
            (tmp / "turntables").mkdir()
            for gif in sorted((evaluation_dir / "turntables").glob("*.gif")):
                shutil.copy2(gif, tmp / "turntables" / gif.name)
                gifs.append(f"turntables/{gif.name}")
        notebooks = [f"notebooks/{p.name}"
                     for p in _convert_notebooks(notebooks_dir, tmp / "notebooks")]
        timings_file = notebooks_dir / "timings.json"
        timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
        if timings:  # the next `ss3d pipeline` of this experiment estimates from these
            (tmp / "timings.json").write_text(json.dumps(timings, indent=1))
        runs = _stage_runs(cfg, track)
        (tmp / "index.html").write_text(
            _index_html(cfg, data, runs, figures, gifs, notebooks, timings, eval_run),
            encoding="utf-8")
        (tmp / "README.md").write_text(
            _readme(cfg, data, tables_md, runs, figures, gifs, notebooks, timings),
            encoding="utf-8")
    return final / "index.html"


def _categories_figure(summary: list[dict[str, Any]], path: Path) -> bool:
    """F@0.05 per category as small multiples (readable at 500 px); False if nothing to draw."""
    if not any(PRIMARY in s for s in summary):
        return False
    from ss3d.viz import metric_small_multiples

    metric_small_multiples(summary, PRIMARY).savefig(path, dpi=100)
    return True


def _pretrain_line(runs: list[dict[str, Any]]) -> str:
    for r in runs:
        if r["stage"] == "pretrain":
            m = r["metrics"]
            if "val/mask_iou" in m:
                return (f"Pre-training, held-out novel views: mask IoU {m['val/mask_iou']:.3f}, "
                        f"PSNR {m.get('val/psnr', float('nan')):.2f} dB, colour spread "
                        f"{m.get('val/colour_spread', float('nan')):.2f} (untrained "
                        f"{m.get('baseline/untrained_mask_iou', float('nan')):.3f}, mean sphere "
                        f"{m.get('baseline/sphere_mask_iou', float('nan')):.3f})."
                        + (f" Seen from its own input's camera: mask IoU "
                           f"{m['val/input_mask_iou']:.3f}." if "val/input_mask_iou" in m else ""))
    return ""


def _levels_line(data: dict[str, Any]) -> str:
    """Where each model's surfaces were cut, when the evaluation chose the levels
    (``evaluate.surface_levels``): every 3D number depends on it."""
    models = data.get("models", [])
    if not any("surface_level_choice" in m for m in models):
        return ""
    parts = [f"{m['label']} {m['surface_level']:g}"
             + ("" if "surface_level_choice" in m else " (its prior's)") for m in models]
    return ("Surfaces cut at each model's own fraction of its peak density, chosen on the val "
            "split (best mean F@0.05): " + ", ".join(parts) + ".")


def _agreement(runs: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """``(category, student–teacher mask IoU before, after)`` of the latest distillation."""
    for r in runs:
        if r["stage"] == "distill":
            m = r["metrics"]
            cats = sorted(k.split("/", 1)[1] for k in m if k.startswith("agreement/"))
            return [(c, m.get(f"agreement_before/{c}", float("nan")), m[f"agreement/{c}"])
                    for c in cats]
    return []


def _agreement_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    return [[html.escape(c), fmt(before), fmt(after)] for c, before, after in _agreement(runs)]


def _verdict_html(verdicts: list[Verdict]) -> str:
    if not verdicts:
        return "<p>No verdicts: the evaluation has no comparisons to draw.</p>"
    rows = "".join(f"<tr class='{v.tone}'><td>{html.escape(v.question)}</td><td>"
                   f"{html.escape(v.measure)}</td><td>{html.escape(v.result)}</td><td><b>"
                   f"{html.escape(v.verdict)}</b></td></tr>" for v in verdicts)
    return ("<div class='scroll'><table class='verdicts'><tr><th>question</th><th>measure</th>"
            f"<th>mean [95% interval]</th><th>verdict</th></tr>{rows}</table></div>"
            f"<p class='small'>{html.escape(VERDICT_NOTE)}</p>")


def _figure(src: str, caption: str, lazy: bool = False) -> str:
    loading = " loading='lazy'" if lazy else ""
    return (f"<figure><img src='{src}' alt='{html.escape(caption)}'{loading}><figcaption>"
            f"{html.escape(caption)}"
            "</figcaption></figure>")


def _fold(summary: str, body: str, anchor: str = "") -> str:
    """A collapsible section, closed: its title stays on the page, its body one click away."""
    ident = f" id='{anchor}'" if anchor else ""
    return f"<details{ident}><summary>{html.escape(summary)}</summary>{body}</details>"


def _index_html(cfg: ExperimentConfig, data: dict[str, Any], runs: list[dict[str, Any]],
                figures: list[str], gifs: list[str], notebooks: list[str],
                timings: dict[str, float], eval_run: str | None) -> str:
    hero, overview, per_category = _split_figures(cfg, figures)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
             f"content='width=device-width, initial-scale=1'><title>ss3d report: "
             f"{html.escape(cfg.name)}</title><style>{CSS}</style></head><body>",
             f"<h1>ss3d report: <code>{html.escape(cfg.name)}</code></h1>",
             f"<p class='small'>{html.escape(_meta_line(timings, eval_run))} "
             "<a href='#definitions'>What the numbers mean</a>.</p>",
             "<h2 id='verdicts'>Verdicts</h2>", _verdict_html(verdict_rows(data))]
    if hero:
        parts.append(_figure(hero, _caption(hero)))
    notes = _warnings(data, runs)
    if notes:
        parts.append("<h2>Needs attention</h2><ul class='note'>" + "".join(
            f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for line in (_pretrain_line(runs), _levels_line(data)):
        if line:
            parts.append(f"<p>{html.escape(line)}</p>")
    parts += [_figure(f, _caption(f)) for f in overview]
    parts.append("<h2>In detail</h2>")
    widths = data.get("half_widths") or half_widths(data["summary"], data.get("poses", []))
    parts.append(_fold("Definitions: metrics, baselines, intervals", f"<p>{BASELINES_TEXT}</p>"
                       + ("<p>Largest 95% interval half-widths (how small a difference this "
                          "run can resolve): " + ", ".join(f"{html.escape(k)} ±{v:.3f}" for k, v
                                                           in widths.items()) + ".</p>"
                          if widths else ""), "definitions"))
    if data.get("verdicts"):
        parts.append(_fold(
            f"What beats what: {len(data['verdicts'])} models against every baseline",
            "<p>F@0.05 of every learned model against every baseline on the same test items: "
            "“beats” only where the 95% paired interval of model minus baseline is above 0."
            "</p><ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in data["verdicts"])
            + "</ul>"))
    for table in tables(data["summary"], data.get("poses", []), data.get("ratios", []),
                        data.get("differences"), data.get("frames")):
        parts.append(_fold(f"{table.title} ({len(table.rows)} rows)", html_table(
            table.header, [[html.escape(c) for c in row] for row in table.rows],
            ["baseline" if b else "" for b in table.baseline_rows])))
    agreement = _agreement_rows(runs)
    if agreement:
        parts.append(_fold("Student–teacher agreement (mask IoU of renders from random poses)",
                           html_table(["category", "before distillation", "after"], agreement)))
    if per_category:
        parts.append(_fold(f"Reconstructions per category ({len(per_category)} figures)",
                           "".join(_figure(f, _caption(f), lazy=True) for f in per_category)))
    if gifs:
        parts.append(_fold(
            f"Turntables of the most advanced model per category ({len(gifs)})",
            "<p>Predicted meshes with their predicted colours, turning once, shown at the size "
            "they were rendered (<code>evaluate.figure_size</code>).</p><div class='gifs'>"
            + "".join(_figure(g, Path(g).stem.replace("_", " "), lazy=True) for g in gifs)
            + "</div>"))
    parts.append(_fold(f"MLflow runs ({len(runs)}) and wall times", _runs_html(cfg, runs, timings)))
    if notebooks:
        parts.append("<p>Executed notebooks: " + ", ".join(
            f"<a href='{n}'>{html.escape(Path(n).stem)}</a>" for n in notebooks) + ".</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _meta_line(timings: dict[str, float], eval_run: str | None) -> str:
    line = f"Written {time.strftime('%Y-%m-%d %H:%M')} by ss3d report."
    if timings:
        line += f" Main job: {sum(timings.values()) / 60:.1f} min."
    if eval_run:
        line += f" Evaluation run {eval_run}."
    return line


def _split_figures(cfg: ExperimentConfig, figures: list[str]
                   ) -> tuple[str | None, list[str], list[str]]:
    """(the inputs-beside-reconstructions figure the report leads with, the overview figures
    shown open, the per-category figures folded away)."""
    per_category = [f for f in figures if Path(f).stem.startswith("reconstructions_")]
    preferred = [f"figures/reconstructions_collection_{c}.png" for c in cfg.data.collections]
    hero = next((f for f in [*preferred, *per_category] if f in per_category), None)
    overview = [f for f in figures if f not in per_category]
    return hero, overview, [f for f in per_category if f != hero]


def _runs_html(cfg: ExperimentConfig, runs: list[dict[str, Any]],
               timings: dict[str, float]) -> str:
    parts = []
    if timings:
        parts.append(f"<p>Main job wall time: {sum(timings.values()) / 60:.1f} min (" + ", ".join(
            f"{html.escape(k)} {v:.0f}s" for k, v in timings.items()) + f")."
            f"{html.escape(_timing_note(cfg))}</p>")
    experiment_link = (f" (<a href='{tracking.ui_url(runs[0]['experiment_id'])}'>the "
                       "experiment's runs table</a>)" if runs else "")
    parts.append("<p>Start the UI with <code>make ui</code> in the repository root; the run "
                 f"ids link to it{experiment_link}. Wall time here is the stage's own, as "
                 "logged in MLflow; the times above are per notebook, including start-up.</p>")
    if runs:
        parts.append(html_table(["stage", "category", "run id", "wall time (s)"],
                                [[r["stage"], html.escape(r["category"]), _mlflow_link(r),
                                  fmt(r["wall_seconds"], 0)] for r in runs]))
    return "".join(parts)


def _timing_note(cfg: ExperimentConfig) -> str:
    if cfg.selftrain.ablation and cfg.data.collections:
        first = cfg.data.collections[0]
        return (f" 02_selftrain_{first} includes its H = 1 ablation run (a second "
                "self-training of the same collection).")
    return ""


def _md_fold(summary: str, body: list[str]) -> list[str]:
    """A closed ``<details>`` block GitHub renders, with Markdown inside."""
    return [f"<details><summary>{html.escape(summary)}</summary>", "", *body, "", "</details>",
            ""]


def _readme(cfg: ExperimentConfig, data: dict[str, Any], tables_md: str,
            runs: list[dict[str, Any]], figures: list[str], gifs: list[str],
            notebooks: list[str], timings: dict[str, float]) -> str:
    hero, overview, per_category = _split_figures(cfg, figures)
    lines = [f"# ss3d report: `{cfg.name}`", "",
             f"{_meta_line(timings, None)} Open `index.html` for the full report.", "",
             "## Verdicts", "", "| question | measure | mean [95% interval] | verdict |",
             "|---|---|---|---|"]
    lines += [f"| {v.question} | {v.measure} | {v.result} | **{v.verdict}** |"
              for v in verdict_rows(data)]
    lines += ["", VERDICT_NOTE, ""]
    if hero:
        lines += [f"![{_caption(hero)}]({hero})", ""]
    notes = _warnings(data, runs)
    if notes:
        lines += ["## Needs attention", "", *[f"* {n}" for n in notes], ""]
    for line in (_pretrain_line(runs), _levels_line(data)):
        if line:
            lines += [line, ""]
    lines += [f"![{_caption(f)}]({f})" for f in overview]
    lines += ["", *_md_fold("Definitions: metrics, baselines, intervals", [BASELINES_TEXT])]
    lines += _md_fold("Every table (the evaluation's tables.md)", [tables_md])
    agreement = _agreement_rows(runs)
    if agreement:
        lines += _md_fold("Student–teacher agreement (mask IoU, random poses)", [
            "| category | before | after |", "|---|---|---|",
            *[f"| {c} | {b} | {a} |" for c, b, a in agreement]])
    if per_category:
        lines += _md_fold(f"Reconstructions per category ({len(per_category)} figures)",
                          [f"![{Path(f).stem}]({f})" for f in per_category])
    if gifs:
        lines += _md_fold(f"Turntables ({len(gifs)})", [" ".join(f"![{Path(g).stem}]({g})"
                                                                 for g in gifs)])
    run_lines = []
    if timings:
        run_lines += [f"Main job wall time: {sum(timings.values()) / 60:.1f} min (" + ", ".join(
            f"{k} {v:.0f}s" for k, v in timings.items()) + f").{_timing_note(cfg)}", ""]
    if runs:
        run_lines += ["| stage | category | MLflow run | wall (s) |", "|---|---|---|---|"]
        run_lines += [f"| {r['stage']} | {r['category']} | `{r['run_id']}` | "
                      f"{fmt(r['wall_seconds'], 0)} |" for r in runs]
    if run_lines:
        lines += _md_fold(f"MLflow runs ({len(runs)}) and wall times", run_lines)
    if notebooks:
        lines += ["Executed notebooks: " + ", ".join(f"[{Path(n).stem}]({n})"
                                                    for n in notebooks)]
    return "\n".join(lines) + "\n"
