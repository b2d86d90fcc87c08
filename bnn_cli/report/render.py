"""The evaluation report of a run: metrics.json, per_class.csv, plots/*.png, report.md and a
self-contained report.html (inline CSS, images as data URIs, no links out: it opens offline).

Markdown and HTML are rendered from one list of sections, so they always say the same thing.
The files are written into a staging folder in the run and swapped in as a whole at the end,
metrics.json last, so its presence means the whole report is in place, and an evaluation that
fails or is stopped leaves the earlier report as it was.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bnn_cli.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    replaced_as_a_whole,
)
from bnn_cli.data.datasets import DATASETS
from bnn_cli.report import fit_report
from bnn_cli.report import metrics as m
from bnn_cli.report.formatting import (
    describe_kept,
    describe_objective,
    format_duration,
    format_number,
    format_percent,
)
from bnn_cli.runs import files, utc_now

log = logging.getLogger(__name__)

# fmt: off
PER_CLASS_COLUMNS = [
    "class", "count", "accuracy", "precision", "recall", "mean_confidence", "mean_entropy",
    "mean_aleatoric", "mean_epistemic", "ece", "error_share", "top_confusion",
    "top_confusion_count",
]
# (key, label, formatter, what it means) for the headline table, in reading order.
HEADLINE = [
    ("accuracy", "Accuracy", format_percent, "share of images whose predicted class is right"),
    ("nll", "NLL", format_number, "mean -log predictive probability of the true class"),
    ("brier", "Brier score", format_number, "mean squared error of the probabilities (0 best)"),
    ("ece", "ECE", format_number, "expected calibration error, 15 confidence bins (0 best)"),
    ("mean_entropy", "Predictive entropy", format_number, "total uncertainty, nats"),
    ("mean_aleatoric", "Aleatoric", format_number, "mean entropy of each draw: noise in data"),
    ("mean_epistemic", "Epistemic", format_number, "mutual information: disagreement of draws"),
    ("auroc_entropy", "AUROC errors (entropy)", format_number,
     "how well entropy flags misclassified images (0.5 chance, 1 perfect)"),
    ("auroc_epistemic", "AUROC errors (epistemic)", format_number,
     "the same, by mutual information"),
    ("coverage_auc", "Accuracy-coverage area", format_number,
     "mean accuracy as the most uncertain images are rejected"),
    ("chi_square", "Chi-square", format_number,
     "predicted vs true class counts, mean over draws (the 2016 notebook's check)"),
    ("chi_square_p", "Chi-square p-value", format_number, "classes - 1 degrees of freedom"),
]
# fmt: on
PLOT_CAPTIONS = {
    "elbo.png": "Training loss (negative ELBO) and validation accuracy",
    "reliability.png": "Reliability diagram: accuracy against confidence, with bin counts",
    "coverage.png": "Accuracy when the most uncertain images are rejected",
    "per_class_uncertainty.png": "Mean aleatoric and epistemic uncertainty per true class",
    "entropy_hist.png": "Uncertainty of correct and wrong predictions",
    "confusion.png": "Confusion matrix",
    "uncertain_digits.png": "The most uncertain images and their predictive distributions",
    "prior_scales.png": "Posterior of the hierarchical prior's scales",
    "shift_rotate.png": "Rotated test images: accuracy, NLL, ECE and entropy against the angle",
    "tune_history.png": "The objective of every trial, and the best so far",
    "tune_importance.png": "How much of the objective's variation each parameter explains",
    "tune_slice.png": "The objective against each parameter's value",
    **fit_report.PLOT_CAPTIONS,
}


# Everything `bnn evaluate` writes into a run: replaced as a whole (metrics.json last).
REPORT_FILES = (files.METRICS_JSON, "per_class.csv", "report.md", "report.html", "plots")


@dataclass
class Section:
    """A heading with paragraphs, an optional table and optional plots, in that order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None
    plots: list[str] = field(default_factory=list)


def write_report(
    run_dir: Path,
    probs: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray,
    *,
    split: str,
    config: dict[str, Any],
    status: dict[str, Any],
    scale_draws: dict[str, np.ndarray] | None = None,
    arrays: dict[str, np.ndarray] | None = None,
    ood: dict[str, fit_report.OodSet] | None = None,
    shift: dict[str, list[dict[str, Any]]] | None = None,
    members: list[dict[str, Any]] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Compute the metrics of `probs` (draws, n, classes) against `labels` and write the report
    files into `run_dir`. `arrays` (the run's approx.npz) adds the posterior plots; `ood`
    (out-of-distribution sets by name) the OOD section; `shift` (per shift, e.g. `rotate`, its
    rows from `metrics.shift_row`) the dataset-shift section; `members` (an ensemble's, from
    `evaluate.member_metrics`) the members beside their mixture. Returns the metrics dict that
    metrics.json holds."""
    run_dir = Path(run_dir)
    ood = ood or {}
    pred = m.summarize(probs, labels)
    names = class_names_for(config, pred.n_classes)
    result = m.compute_metrics(probs, labels, summary=pred)
    result.update(split=split, draws=int(np.shape(probs)[0]), evaluated_at=utc_now())
    result["converged"] = status.get("converged")
    if ood:
        result["ood"] = fit_report.ood_results(pred, ood)
    if shift:
        result["shift"] = shift
    if members:
        result["ensemble"] = {"members": [_member_entry(row) for row in members]}
    rows = m.per_class(probs, labels, names, summary=pred)
    plots = render_plots(run_dir, pred, rows, names, images, scale_draws, arrays, ood, shift)
    sections = build_sections(run_dir, result, rows, config, status, list(plots))
    title = f"bnn report: {config.get('name', run_dir.name)}"
    # Written aside, then swapped in: a failed or interrupted evaluation leaves the earlier
    # report whole, and a finished one leaves none of its files behind.
    with replaced_as_a_whole(run_dir, REPORT_FILES, last=files.METRICS_JSON, label="report") as out:
        (out / "plots").mkdir()
        for name, png in plots.items():
            atomic_write_bytes(out / "plots" / name, png)
        atomic_write_text(out / "per_class.csv", per_class_csv(rows))
        atomic_write_text(out / "report.md", render_markdown(title, sections))
        atomic_write_text(out / "report.html", render_html(title, sections, plots))
        atomic_write_json(out / files.METRICS_JSON, result)  # read: runs.files.read_metrics
    if console is not None:
        console.print(summary_table(result, config.get("name", run_dir.name)))
    log.info("report written to %s", run_dir)
    return result


def class_names_for(config: dict[str, Any], n_classes: int) -> list[str]:
    """The dataset registry's class names; the label numbers for an unknown dataset."""
    spec = DATASETS.get((config.get("data") or {}).get("dataset", "mnist"))
    names = list(spec.class_names) if spec else []
    return names if len(names) == n_classes else [str(c) for c in range(n_classes)]


def render_plots(
    run_dir: Path,
    pred: m.Predictive,
    rows: list[dict[str, Any]],
    names: list[str],
    images: np.ndarray,
    scale_draws: dict[str, np.ndarray] | None,
    arrays: dict[str, np.ndarray] | None = None,
    ood: dict[str, fit_report.OodSet] | None = None,
    shift: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, bytes]:
    """Every figure as PNG bytes, by file name, in the order the report shows them."""
    from bnn_cli.report import plots  # matplotlib is imported only when a report is drawn

    jobs: dict[str, Callable[[], bytes]] = {}
    elbo = files.read_elbo_csv(run_dir)
    if elbo is not None:
        jobs["elbo.png"] = lambda: plots.elbo_png(elbo)
    jobs["reliability.png"] = lambda: plots.reliability_png(pred)
    jobs["coverage.png"] = lambda: plots.coverage_png(pred)
    jobs["per_class_uncertainty.png"] = lambda: plots.per_class_uncertainty_png(rows)
    jobs["entropy_hist.png"] = lambda: plots.entropy_hist_png(pred)
    matrix = m.confusion_matrix(pred.labels, pred.predicted, pred.n_classes)
    jobs["confusion.png"] = lambda: plots.confusion_png(matrix, names)
    jobs["uncertain_digits.png"] = lambda: plots.uncertain_digits_png(images, pred, names)
    if scale_draws:
        jobs["prior_scales.png"] = lambda: plots.prior_scales_png(scale_draws)
    jobs.update(fit_report.posterior_jobs(run_dir, arrays, elbo))
    jobs.update(fit_report.ood_jobs(pred, ood or {}, names))
    for name, shift_rows in (shift or {}).items():
        jobs[f"shift_{name}.png"] = partial(plots.shift_png, {"": shift_rows}, name)
    return {name: job() for name, job in jobs.items()}


def per_class_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PER_CLASS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in PER_CLASS_COLUMNS})
    return buffer.getvalue()


def build_sections(
    run_dir: Path,
    result: dict[str, Any],
    rows: list[dict[str, Any]],
    config: dict[str, Any],
    status: dict[str, Any],
    plot_names: list[str],
) -> list[Section]:
    overview = (
        f"Run `{run_dir.name}`, state **{status.get('state', '?')}**; evaluated on "
        f"the {result['split']} split ({result['n_images']} images, "
        f"{result['draws']} posterior draws) at {result['evaluated_at']}."
    )
    headline = [[label, fmt(result.get(key)), meaning] for key, label, fmt, meaning in HEADLINE]
    coverage = [
        [f"{float(c):.0%}", format_percent(acc)] for c, acc in result["coverage_accuracy"].items()
    ]
    verdict = fit_report.convergence_paragraphs(status)
    first = [Section(verdict[0], verdict[1])] if verdict else []
    ood_plots = [p for p in plot_names if p.startswith("ood_")]
    ood = (
        [
            Section(
                "Out-of-distribution images",
                [fit_report.OOD_EXPLAINED],
                fit_report.ood_table(result["ood"], format_number),
                ood_plots,
            )
        ]
        if result.get("ood")
        else []
    )
    shift_plots = [p for p in plot_names if p.startswith("shift_")]
    shift = [
        Section(
            "Rotated test images",
            [SHIFT_EXPLAINED],
            shift_table(rows_of_shift),
            [p for p in shift_plots if p == f"shift_{name}.png"],
        )
        for name, rows_of_shift in (result.get("shift") or {}).items()
    ]
    ensemble = (
        [Section("Ensemble members", [ENSEMBLE_EXPLAINED], members_table(result))]
        if result.get("ensemble")
        else []
    )
    return [
        *first,
        Section("Run", [overview], (["setting", "value"], config_summary(config, status))),
        Section("Headline metrics", [], (["metric", "value", "meaning"], headline)),
        *ensemble,
        *ood,
        *shift,
        Section(
            "Accuracy when rejecting uncertain images",
            ["The images with the highest predictive entropy are set aside first."],
            (["coverage", "accuracy"], coverage),
        ),
        Section("Per class", [], per_class_table(rows)),
        Section("Plots", [], None, [p for p in plot_names if p not in ood_plots + shift_plots]),
    ]


ENSEMBLE_EXPLAINED = (
    "The predictive above is the equal mixture of the members' predictives: each member (the "
    "same config, its own seed) contributes its share of the draws. Below, each member alone "
    "on those same draws, then the mixture."
)
MEMBER_KEYS = ("accuracy", "nll", "ece", "mean_epistemic")


def _member_entry(row: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's view of one member: who it is and its headline figures."""
    entry = {k: row[k] for k in ("member", "seed", "draws", *MEMBER_KEYS)}
    entry["ood"] = {
        name: {k: v for k, v in ood.items() if k.startswith("auroc")}
        for name, ood in row.get("ood", {}).items()
    }
    return entry


def members_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    entries = result["ensemble"]["members"]
    ood_names = list(result.get("ood") or {})
    header = ["member", "seed", "draws", "accuracy", "NLL", "ECE", "mean MI"]
    header += [f"AUROC {name} (entropy)" for name in ood_names]

    def cells(entry: dict[str, Any], ood: dict[str, Any]) -> list[str]:
        return [
            format_percent(entry.get("accuracy")),
            *(format_number(entry.get(k)) for k in MEMBER_KEYS[1:]),
            *(format_number((ood.get(n) or {}).get("auroc_entropy")) for n in ood_names),
        ]

    body = [
        [e["member"], str(e["seed"]), str(e["draws"]), *cells(e, e.get("ood") or {})]
        for e in entries
    ]
    body.append(["mixture", "—", str(result["draws"]), *cells(result, result.get("ood") or {})])
    return header, body


SHIFT_EXPLAINED = (
    "The test images rotated counter-clockwise by each angle (bilinear, in the 28x28 frame), "
    "as in the rotated-MNIST benchmark of Ovadia et al. (2019): every network loses accuracy as "
    "the digits turn; one whose uncertainty can be trusted grows its entropy with the errors, "
    "so its ECE and NLL climb more slowly."
)


def shift_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["angle", "accuracy", "NLL", "ECE", "Brier", "mean entropy", "mean MI"]
    body = [
        [
            f"{row['level']:g}°",
            format_percent(row["accuracy"]),
            *(format_number(row[k]) for k in ("nll", "ece", "brier", "mean_entropy", "mean_mi")),
        ]
        for row in rows
    ]
    return header, body


def config_summary(config: dict[str, Any], status: dict[str, Any]) -> list[list[str]]:
    data, model = config.get("data") or {}, config.get("model") or {}
    prior, inference = config.get("prior") or {}, config.get("inference") or {}
    return [
        ["name", str(config.get("name", "?"))],
        ["seed", str(config.get("seed", "?"))],
        [
            "data",
            f"{data.get('dataset', '?')}: {data.get('train_size', '?')} train, "
            f"{data.get('val_size', '?')} validation images",
        ],
        ["model", describe_model(model)],
        ["prior", describe_prior(prior)],
        [
            "inference",
            f"{_ensemble_prefix(inference)}"
            f"{'MAP' if inference.get('method') == 'map' else 'ADVI'}, "
            f"{status.get('iterations_done', '?')} of "
            f"{inference.get('iterations', '?')} iterations, batch "
            f"{inference.get('batch_size', '?')}, {inference.get('optimizer', '?')} "
            f"lr {inference.get('learning_rate', '?')} ({inference.get('lr_schedule', '?')}), "
            f"rho step x{inference.get('rho_lr_scale', 1.0):g}, start sigma "
            f"{inference.get('start_sigma', '?')}",
        ],
        ["objective", describe_objective(inference, config.get("prior") or {})],
        ["kept", describe_kept(inference, status)],
        ["compute", f"backend {inference.get('backend', '?')}, {inference.get('floatX', '?')}"],
        ["wall time", format_duration(status.get("wall_s"))],
        ["created", str(status.get("created", "?"))],
    ]


def _ensemble_prefix(inference: dict[str, Any]) -> str:
    size = inference.get("ensemble")
    return f"ensemble of {size} fits (seeds seed .. seed + {size - 1}), each " if size else ""


def describe_model(model: dict[str, Any]) -> str:
    hidden = "-".join(str(h) for h in model.get("hidden") or [])
    activation = model.get("activation", "?")
    if model.get("architecture") == "conv":
        filters = "-".join(str(f) for f in model.get("filters") or [])
        return (
            f"conv: filters {filters}, kernel {model.get('kernel_size', '?')}, pool "
            f"{model.get('pool_size', '?')}, dense {hidden or 'none'}, {activation}"
        )
    return f"{model.get('architecture', '?')}: hidden {hidden or 'none'}, {activation}"


def describe_prior(prior: dict[str, Any]) -> str:
    def sd(value: Any) -> str:
        return f"{prior.get('gain', 1.0):g}/sqrt(fan_in)" if value == "fan_in" else str(value)

    if prior.get("kind") == "hierarchical":
        per = prior.get("scale_per", "tensor")
        per = "tensor" if per == "tensor" else f"{per} unit (biases: per tensor)"
        hyper = prior.get("hyperprior", "halfnormal")
        if hyper == "collapsed":
            return (
                f"hierarchical: N(m, v) per {per}, v ~ InvGamma({prior.get('hyper_shape', 1.0):g}"
                f", centred on {sd(prior.get('hyper_sd', '?'))}^2), m per weight with alpha "
                f"{prior.get('alpha', 1.0):g}, both integrated out (collapsed bound)"
            )
        if hyper == "empirical":
            return (
                f"hierarchical: N(0, s) per {per}, s a point fitted to the data (empirical Bayes)"
            )
        law = "HalfCauchy" if hyper == "halfcauchy" else "HalfNormal"
        return f"hierarchical: N(0, s) per {per}, s ~ {law}({sd(prior.get('hyper_sd', '?'))})"
    alpha = prior.get("alpha", 1.0)
    mean = f", its mean integrated out (collapsed, alpha {alpha:g})" if alpha != 1.0 else ""
    return f"{prior.get('kind', '?')}: N(0, {sd(prior.get('sd', '?'))}){mean}"


def per_class_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "class",
        "images",
        "accuracy",
        "precision",
        "confidence",
        "entropy",
        "aleatoric",
        "epistemic",
        "ECE",
        "share of errors",
        "most confused with",
    ]
    body = []
    for r in rows:
        confusion = (
            f"{r['top_confusion']} ({r['top_confusion_count']})" if r["top_confusion"] else "—"
        )
        body.append(
            [
                str(r["class"]),
                str(r["count"]),
                format_percent(r["accuracy"]),
                format_percent(r["precision"]),
                format_number(r["mean_confidence"]),
                format_number(r["mean_entropy"]),
                format_number(r["mean_aleatoric"]),
                format_number(r["mean_epistemic"]),
                format_number(r["ece"]),
                format_percent(r["error_share"]),
                confusion,
            ]
        )
    return headers, body


def render_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        if section.table:
            headers, body = section.table
            lines.append(_md_row(headers))
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines += [_md_row(row) for row in body]
            lines.append("")
        for name in section.plots:
            lines += [f"### {caption(name)}", "", f"![{name}](plots/{name})", ""]
    return "\n".join(lines)


def caption(plot_name: str) -> str:
    if plot_name.startswith("ood_"):
        return fit_report.ood_caption(plot_name) or plot_name
    return PLOT_CAPTIONS.get(plot_name, plot_name)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def render_html(title: str, sections: list[Section], plots: dict[str, bytes]) -> str:
    """One file, nothing fetched: CSS inline, images as base64 data URIs, no scripts."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [f"<p>{_inline_markup(p)}</p>" for p in section.paragraphs]
        if section.table:
            body.append(_html_table(*section.table))
        for name in section.plots:
            text = html.escape(caption(name))
            data = base64.b64encode(plots[name]).decode("ascii")
            body.append(
                f'<figure><img alt="{text}" src="data:image/png;base64,{data}">'
                f"<figcaption>{text}</figcaption></figure>"
            )
    return HTML_PAGE.format(title=html.escape(title), css=CSS, body="\n".join(body))


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline_markup(text: str) -> str:
    """The two bits of Markdown the paragraphs use: `code` and **bold**."""
    out = html.escape(text)
    for marker, tag in (("`", "code"), ("**", "strong")):
        parts = out.split(marker)
        if len(parts) % 2 == 1:  # only when the markers pair up
            out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(parts))
    return out


HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       background: #fafafa; margin: 0; line-height: 1.45; }
main { max-width: 1000px; margin: 0 auto; padding: 1.5rem 2rem 3rem; background: #fff; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #4c72b0; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; color: #2d4a7a; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #e2e2e2; text-align: left; }
th { background: #eef2f8; }
tbody tr:nth-child(even) { background: #f8f9fb; }
td { font-variant-numeric: tabular-nums; }
code { background: #f0f0f0; padding: 0 .25rem; border-radius: 3px; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; margin-top: .3rem; }
"""


def summary_table(result: dict[str, Any], name: str) -> Table:
    """The headline metrics for the terminal."""
    table = Table(
        title=f"{name}: {result['split']} split, {result['n_images']} images, "
        f"{result['draws']} draws"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label, fmt, _ in HEADLINE:
        if key.startswith("chi_square") or key == "coverage_auc":
            continue  # kept for the files; the terminal shows the essentials
        table.add_row(label, fmt(result.get(key)))
    for ood_name, ood in (result.get("ood") or {}).items():
        table.add_row(f"AUROC {ood_name} (entropy)", format_number(ood.get("auroc_entropy")))
        table.add_row(f"AUROC {ood_name} (mutual inf.)", format_number(ood.get("auroc_mi")))
    return table
