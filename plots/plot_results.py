#!/usr/bin/python3
"""Draws the seed study's charts from qbench results files (JSON only; nothing else is read).

    /usr/bin/python3 plots/plot_results.py results/h200-minigpt4.json --out plots/figures

Charts (each as PNG and SVG, one panel per model and instance):
  tokens_per_s           decode tokens/s by framework and bit width, beam widths side by side, p10-p90 whiskers;
                         cells that did not run are marked where their bar would be (OOM, RAM, n/a, error)
  load_time              load time, split into read / upload / quantize-on-load where the record has the parts
  vram                   VRAM at its peak as the budget counts it (CUDA context + vision tower + allocations)
                         against the instance's budget (dashed); an OOM cell is drawn hatched up to what it
                         asked for: budget - available + requested
  bandwidth_utilization  bytes a decode step must read per second over the device's measured bandwidth (1 = limit)
  quality_vs_speed       top-1 agreement and mean KL against FP16 beside decode tokens/s

Debian's python3-matplotlib is enough: run it with /usr/bin/python3 (the `python3` on PATH may lack matplotlib).
Several files (shards of one run) are merged; where a cell appears twice, the later record counts.
"""
import argparse
import json
import pathlib
import re
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)

GIB = 1024.0 ** 3
FRAMEWORK_ORDER = {"fp16": 0, "gptq": 1, "bnb": 2}
# What a cell that did not run shows where its bar would be.
OUTCOME_MARK = {"oom_vram": "OOM", "oom_host": "RAM", "unsupported": "n/a", "error": "error", "timeout": "timeout"}
BEAM_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]
FRAMEWORK_COLORS = {"fp16": "#4C72B0", "gptq": "#DD8452", "bnb": "#55A868"}
LOAD_PARTS = [("load_read_s", "read", "#4C72B0"), ("load_upload_s", "upload", "#DD8452"),
              ("load_quantize_s", "quantize on load", "#55A868")]


class ResultsError(Exception):
    pass


def natural_key(text):
    """"vicuna-7b" before "vicuna-13b": digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def load_records(paths):
    """All records of the files, later ones replacing earlier ones of the same cell."""
    by_cell = {}
    for path in paths:
        try:
            doc = json.loads(pathlib.Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ResultsError("%s: cannot read as JSON: %s" % (path, e))
        if not isinstance(doc, dict) or "schema_version" not in doc or not isinstance(doc.get("cells"), list):
            raise ResultsError("%s: not a qbench results file (no schema_version and cells)" % path)
        if not str(doc["schema_version"]).startswith("1."):
            raise ResultsError("%s: schema version %s, this script reads 1.x" % (path, doc["schema_version"]))
        for i, record in enumerate(doc["cells"]):
            if not isinstance(record, dict) or not all(k in record for k in ("cell", "outcome", "metrics")):
                raise ResultsError("%s: /cells/%d is not a cell record" % (path, i))
            by_cell[json.dumps(record["cell"], sort_keys=True)] = record
    if not by_cell:
        raise ResultsError("no cells in %s" % ", ".join(map(str, paths)))
    return list(by_cell.values())


def metric(record, path):
    """A figure of a record: a number, or the median of a summary; None when absent."""
    node = record["metrics"]
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict):
        node = node.get("median")
    return node if isinstance(node, (int, float)) else None


def spread(record, path):
    """(median - p10, p90 - median) of a summary, for whiskers; None for a single number."""
    node = record["metrics"].get(path)
    if isinstance(node, dict) and all(k in node for k in ("median", "p10", "p90")):
        return max(0.0, node["median"] - node["p10"]), max(0.0, node["p90"] - node["median"])
    return None


class Matrix:
    """The cells arranged as the seed's tables: panels (model, instance), x = configuration, series = beam width."""

    def __init__(self, records):
        self.records = records
        group_sizes = {r["cell"].get("gptq", {}).get("group_size") for r in records if r["cell"]["framework"] == "gptq"}
        self.show_group = len(group_sizes) > 1
        plans = {r["cell"].get("gptq", {}).get("memory_plan") for r in records if r["cell"]["framework"] == "gptq"}
        self.show_plan = len(plans) > 1
        self.models = sorted({r["cell"]["model"] for r in records}, key=natural_key)
        self.instances = sorted({r["cell"]["instance"] for r in records}, key=natural_key)
        self.beams = sorted({r["cell"]["beam"] for r in records})
        self.configs = sorted({self.config(r) for r in records}, key=self.config_order)
        self.cells = {}
        for r in records:
            c = r["cell"]
            key = (c["model"], c["instance"], self.config(r), c["beam"])
            if key in self.cells:
                # Files from different runs (builds, machines) hold the same cell: the later file's record is drawn.
                print("plot_results.py: warning: %s %s %s beam %d appears in more than one record; drawing the last"
                      % (c["model"], c["instance"], self.config(r), c["beam"]), file=sys.stderr)
            self.cells[key] = r

    def config(self, record):
        """The x-axis label of a cell: framework, bits and the options that tell such cells apart."""
        c = record["cell"]
        label = "fp16" if c["framework"] == "fp16" else "%s %db" % (c["framework"], c["bits"])
        if c["framework"] == "gptq":
            if self.show_group:
                label += " g%d" % c["gptq"]["group_size"]
            if c["gptq"].get("desc_act"):
                label += " act"
            if self.show_plan:
                label += " " + c["gptq"].get("memory_plan", "autogptq")
        if c["framework"] == "bnb" and c["bits"] == 4:
            label = "bnb " + c["bnb"]["quant_type"] + ("-dq" if c["bnb"].get("double_quant") else "")
        return label

    def config_order(self, label):
        for r in self.records:
            if self.config(r) == label:
                c = r["cell"]
                return FRAMEWORK_ORDER.get(c["framework"], 9), c["bits"], label
        return 9, 0, label

    def get(self, model, instance, config, beam):
        return self.cells.get((model, instance, config, beam))

    def budget_bytes(self, instance, overrides):
        """The instance's VRAM budget: --budget, else what a cell on it records (vram_budget_bytes, or an OOM record's
        budget in older files); None when unknown."""
        if instance in overrides:
            return overrides[instance] * GIB
        for r in self.records:
            if r["cell"]["instance"] == instance and isinstance(r["metrics"].get("vram_budget_bytes"), int):
                return r["metrics"]["vram_budget_bytes"]
        for r in self.records:
            oom = r["metrics"].get("oom")
            if r["cell"]["instance"] == instance and isinstance(oom, dict) and oom.get("kind") == "vram" \
                    and "budget_bytes" in oom:
                return oom["budget_bytes"]
        return None


def panel_grid(matrix, title, ylabel):
    rows, cols = len(matrix.models), len(matrix.instances)
    width = max(5.0, 0.55 * len(matrix.configs) * max(1, len(matrix.beams)) ** 0.5 + 1.5)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.6 * rows), squeeze=False, sharey="row")
    fig.suptitle(title)
    for i, model in enumerate(matrix.models):
        for j, instance in enumerate(matrix.instances):
            ax = axes[i][j]
            ax.set_title("%s on %s" % (model, instance), fontsize=10)
            ax.set_xticks(range(len(matrix.configs)))
            ax.set_xticklabels(matrix.configs, rotation=45, ha="right", fontsize=8)
            ax.set_xlim(-0.6, len(matrix.configs) - 0.4)
            ax.grid(axis="y", alpha=0.3)
            if j == 0:
                ax.set_ylabel(ylabel)
    return fig, axes


def finish_row(panels, headroom=1.12):
    """Sets one y range for a row of panels (they share the y axis) from the tallest bar in any of them, then writes,
    where a cell has no bar, why (OOM, n/a, ...). Per-panel limits would let the last panel of the row (perhaps one
    where nothing ran) decide the scale of all of them."""
    top = max((t for _, t, _ in panels), default=0.0) or 1.0
    for ax, panel_top, missing in panels:
        ax.set_ylim(0, top * headroom)
        if not panel_top and all(record is None for _, record in missing):
            ax.text(0.5, 0.5, "no cells of this model on this instance", transform=ax.transAxes, ha="center",
                    va="center", fontsize=8, color="gray")
        for x, record in missing:
            if record is not None:
                text = OUTCOME_MARK.get(record["outcome"], record["outcome"])
                ax.text(x, 0.02 * top, text, ha="center", va="bottom", rotation=90, fontsize=7, color="#B22222")


def beam_legend(fig, matrix):
    """One legend for the figure: the beam widths' colors (panels would hide bars under their own)."""
    handles = [plt.Rectangle((0, 0), 1, 1, color=BEAM_COLORS[b % len(BEAM_COLORS)]) for b in range(len(matrix.beams))]
    fig.legend(handles, ["beam %d" % b for b in matrix.beams], loc="upper right", fontsize=8, ncol=len(matrix.beams))


def beam_bars(matrix, metric_path, title, ylabel, scale=1.0, whiskers=False, limit_line=None):
    fig, axes = panel_grid(matrix, title, ylabel)
    n = max(1, len(matrix.beams))
    width = 0.8 / n
    for i, model in enumerate(matrix.models):
        row = []
        for j, instance in enumerate(matrix.instances):
            ax = axes[i][j]
            top = 0.0
            missing = []
            for b, beam in enumerate(matrix.beams):
                xs, ys, errs = [], [], []
                for k, config in enumerate(matrix.configs):
                    x = k - 0.4 + width * (b + 0.5)
                    r = matrix.get(model, instance, config, beam)
                    value = metric(r, metric_path) if r is not None and r["outcome"] == "ok" else None
                    if value is None:
                        missing.append((x, r))
                        continue
                    xs.append(x)
                    ys.append(value / scale)
                    s = spread(r, metric_path) if whiskers else None
                    errs.append((s[0] / scale, s[1] / scale) if s else (0.0, 0.0))
                    top = max(top, value / scale + errs[-1][1])
                yerr = list(zip(*errs)) if whiskers and errs else None
                ax.bar(xs, ys, width, yerr=yerr, capsize=2, color=BEAM_COLORS[b % len(BEAM_COLORS)])
            if limit_line is not None:
                ax.axhline(limit_line, color="black", linestyle="--", linewidth=1)
                top = max(top, limit_line)
            row.append((ax, top, missing))
        finish_row(row)
    beam_legend(fig, matrix)
    return fig


def load_time_chart(matrix):
    fig, axes = panel_grid(matrix, "Load time (cold page cache)", "seconds")
    for i, model in enumerate(matrix.models):
        row = []
        for j, instance in enumerate(matrix.instances):
            ax = axes[i][j]
            top = 0.0
            missing = []
            labelled = set()
            for k, config in enumerate(matrix.configs):
                # Loading does not depend on the beam width: the narrowest beam's record stands for the column.
                r = next((matrix.get(model, instance, config, b) for b in matrix.beams
                          if matrix.get(model, instance, config, b) is not None), None)
                total = metric(r, "load_time_s") if r is not None and r["outcome"] == "ok" else None
                if total is None:
                    missing.append((k, r))
                    continue
                parts = [(name, label, color, metric(r, name)) for name, label, color in LOAD_PARTS]
                if any(p[3] is not None for p in parts):
                    bottom = 0.0
                    for name, label, color, value in parts:
                        if value:
                            ax.bar(k, value, 0.6, bottom=bottom, color=color,
                                   label=None if label in labelled else label)
                            labelled.add(label)
                            bottom += value
                    other = total - bottom
                    if other > 1e-9:
                        ax.bar(k, other, 0.6, bottom=bottom, color="#BBBBBB",
                               label=None if "other" in labelled else "other")
                        labelled.add("other")
                else:
                    ax.bar(k, total, 0.6, color="#4C72B0")
                top = max(top, total)
            row.append((ax, top, missing))
            if labelled:
                ax.legend(fontsize=7, loc="upper right")
        finish_row(row)
    return fig


def vram_chart(matrix, budgets):
    fig, axes = panel_grid(matrix, "VRAM peak against the instance's budget "
                                   "(gray: CUDA context; light: MiniGPT-4 vision tower)", "GiB")
    n = max(1, len(matrix.beams))
    width = 0.8 / n
    for i, model in enumerate(matrix.models):
        row = []
        for j, instance in enumerate(matrix.instances):
            ax = axes[i][j]
            budget = matrix.budget_bytes(instance, budgets)
            top = budget / GIB if budget else 0.0
            missing = []
            for b, beam in enumerate(matrix.beams):
                color = BEAM_COLORS[b % len(BEAM_COLORS)]
                for k, config in enumerate(matrix.configs):
                    x = k - 0.4 + width * (b + 0.5)
                    r = matrix.get(model, instance, config, beam)
                    if r is None:
                        continue
                    oom = r["metrics"].get("oom")
                    peak = metric(r, "vram_peak_bytes")
                    if r["outcome"] == "oom_vram" and isinstance(oom, dict) and "budget_bytes" in oom:
                        # What it would have needed at least: everything allocated when it failed, plus the request.
                        need = (oom["budget_bytes"] - oom["available_bytes"] + oom["requested_bytes"]) / GIB
                        ax.bar(x, need, width, color="white", edgecolor=color, hatch="//")
                        ax.text(x, need, "OOM", ha="center", va="bottom", rotation=90, fontsize=7, color="#B22222")
                        top = max(top, need)
                    elif peak is not None:
                        # Stacked as the budget counts them: CUDA context (gray), the resident vision tower
                        # (light), then the model's own allocations at their peak.
                        context = (metric(r, "vram_context_bytes") or 0) / GIB
                        vision = (metric(r, "vram_vision_tower_bytes") or 0) / GIB
                        ax.bar(x, context, width, color="#BBBBBB")
                        ax.bar(x, vision, width, bottom=context, color=color, alpha=0.35)
                        ax.bar(x, peak / GIB - vision, width, bottom=context + vision, color=color)
                        top = max(top, context + peak / GIB)
                    else:
                        missing.append((x, r))
            if budget:
                ax.axhline(budget / GIB, color="#B22222", linestyle="--", linewidth=1,
                           label="budget %.1f GiB" % (budget / GIB))
                ax.legend(fontsize=7, loc="upper center")
            row.append((ax, top, missing))
        finish_row(row, headroom=1.2)
    beam_legend(fig, matrix)
    return fig


def quality_chart(matrix):
    cols = len(matrix.instances)
    fig, axes = plt.subplots(2, cols, figsize=(5.5 * cols, 7.5), squeeze=False, sharex="col")
    fig.suptitle("Quality against FP16 beside decode speed (beam %d)" % matrix.beams[0])
    beam = matrix.beams[0]
    for j, instance in enumerate(matrix.instances):
        for row, (path, ylabel) in enumerate((("quality.top1_agreement", "top-1 agreement"),
                                              ("quality.mean_kl", "mean KL (nats)"))):
            ax = axes[row][j]
            seen = set()
            for model in matrix.models:
                for config in matrix.configs:
                    r = matrix.get(model, instance, config, beam)
                    if r is None or r["outcome"] != "ok":
                        continue
                    x, y = metric(r, "decode_tokens_per_s"), metric(r, path)
                    if x is None or y is None:
                        continue
                    framework = r["cell"]["framework"]
                    marker = "o" if model == matrix.models[0] else "s"
                    ax.scatter([x], [y], color=FRAMEWORK_COLORS.get(framework, "gray"), marker=marker,
                               label=None if (framework, model) in seen else "%s, %s" % (framework, model))
                    seen.add((framework, model))
                    ax.annotate(config.split(" ", 1)[-1], (x, y), fontsize=6, xytext=(3, 3),
                                textcoords="offset points")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(instance, fontsize=10)
                if seen:
                    ax.legend(fontsize=7)
            else:
                ax.set_xlabel("decode tokens/s")
    return fig


def save(fig, out_dir, name, formats):
    fig.tight_layout()
    written = []
    for fmt in formats:
        path = out_dir / ("%s.%s" % (name, fmt))
        # No date in the files, so charts of the same results are byte-identical and diff cleanly.
        metadata = {"Date": None} if fmt in ("svg", "pdf") else {}
        fig.savefig(path, dpi=120, metadata=metadata)
        written.append(path)
    plt.close(fig)
    return written


def parse_budgets(items):
    budgets = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            budgets[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ResultsError("--budget expects INSTANCE=GIB, got %r" % item)
    return budgets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="qbench results JSON files (shards of a run are merged)")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument("--formats", nargs="+", default=["png", "svg"], choices=["png", "svg", "pdf"])
    parser.add_argument("--budget", action="append", default=[], metavar="INSTANCE=GIB",
                        help="VRAM budget of an instance where no OOM record states it, e.g. g5.2xlarge=22.49")
    args = parser.parse_args(argv)

    plt.rcParams["svg.fonttype"] = "none"  # text stays text in SVG: smaller, searchable
    plt.rcParams["svg.hashsalt"] = "qbench"  # stable element ids
    try:
        matrix = Matrix(load_records(args.results))
        budgets = parse_budgets(args.budget)
    except ResultsError as e:
        print("plot_results: %s" % e, file=sys.stderr)
        return 1
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    charts = [
        ("tokens_per_s", beam_bars(matrix, "decode_tokens_per_s", "Decode speed (median, p10-p90)", "tokens/s",
                                   whiskers=True)),
        ("load_time", load_time_chart(matrix)),
        ("vram", vram_chart(matrix, budgets)),
        ("bandwidth_utilization", beam_bars(matrix, "bandwidth_utilization",
                                            "Bandwidth utilization (1 = the device's measured limit)",
                                            "fraction of bandwidth", limit_line=1.0)),
        ("quality_vs_speed", quality_chart(matrix)),
    ]
    for name, fig in charts:
        for path in save(fig, out_dir, name, args.formats):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
