"""report.md and report.html from report.json data: the same tables, two markups.

`sections` turns the data into (title, header, rows) tables once; the markdown and HTML writers
only lay them out, so the two files cannot disagree. None prints as "unknown"; an energy prints as
its central value with its interval, and a partial total with the names of its unknown terms.
"""

from __future__ import annotations

import base64
import html as html_lib

Table = tuple[str, list[str], list[list[str]]]


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.3g}"
    elif value == []:
        text = "none"
    elif isinstance(value, list):
        text = " x ".join(map(str, value)) if all(isinstance(v, int) for v in value) else ", ".join(map(str, value))
    else:
        text = str(value)
    return f"{text} {unit}".rstrip()


def interval(value, low, high, unit: str = "") -> str:
    """`value [low, high] unit`; a point (low == high) prints as the value alone."""
    if value is None:
        return "unknown"
    if low is None or low == high:
        return fmt(value, unit)
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}] {unit}".rstrip()


def energy_total(energy_j: dict, *, short: bool = False) -> str:
    """The total with its interval, flagged when terms are unknown (`short`: without naming them)."""
    total = interval(energy_j["total"], energy_j["low"], energy_j["high"], "J")
    if not energy_j["partial"]:
        return total
    if short:
        return f"{total} (partial)"
    why = " (the chip has no step time and the input no dt: give --dt)" if "static" in energy_j["unknown"] else ""
    return f"{total} (partial: {', '.join(energy_j['unknown'])} unknown{why})"


def ratio(vs: dict | None) -> str:
    return "n/a" if vs is None else interval(vs["value"], vs["low"], vs["high"]) + " x"


def violation_text(v: dict, *, with_layer: bool = True) -> str:
    """One violation as a sentence: what the layer has and what the chip allows."""
    constraint, value, limit = v["constraint"], v["value"], v["limit"]
    if constraint == "host_partition":
        text = f"a host partition ({fmt(value)} MACs per sample) runs off the fabric; this chip runs no host partition"
    elif isinstance(limit, list) and constraint in ("neuron_model", "layer_type", "stride"):
        text = f"{constraint} is {fmt(value)}; the chip supports: {', '.join(map(str, limit)) if limit else 'none'}"
    elif constraint == "leak":
        text = "its neurons leak; the chip's neurons do not"
    elif constraint == "graded_input":
        text = "it reads graded values; the chip takes binary spikes only"
    elif constraint in ("core_assignment", "neuron_layers"):
        text = f"{constraint} is {fmt(value)}; the chip needs: {fmt(limit)}"
    else:
        text = f"{constraint} is {fmt(value)}, above the chip's limit of {fmt(limit)}"
    return f"{v['layer']}: {text}" if with_layer else text


def summary_rows(data: dict) -> list[list[str]]:
    """One row per profile: the verdicts a reader looks at first (shared with the terminal table)."""
    rows = []
    for name, p in data["profiles"].items():
        if p["kind"] == "baseline":  # no capacity or timing model: nothing to be unknown about
            fits, cores, chips, latency, budget = "n/a (baseline)", "n/a", "n/a", "n/a", "n/a"
        else:
            fits, cores, chips, latency = p["verdict"], fmt(p["cores"]), fmt(p["chips"]), fmt(p["latency_s"], "s")
            budget = "not asked" if data["budget_ms"] is None else fmt(p["budget_ok"])
        violations = str(len(p["violations"]))
        energy = energy_total(p["energy_j"], short=True)
        rows.append([name, fits, violations, cores, chips, energy, ratio(p.get("energy_vs_baseline")), latency, budget])
    return rows


SUMMARY_HEADER = ["profile", "fits", "violations", "cores", "chips", "energy / sample", "x ANN baseline", "latency", "budget ok"]


def sections(data: dict) -> list[Table]:
    totals = data["totals"]
    tables: list[Table] = [
        (
            "Totals (per sample)",
            ["quantity", "value"],
            [[k, fmt(v)] for k, v in totals.items() if k != "firing_rate_per_step"],
        ),
        (
            "Layers (per sample)",
            ["layer", "kind", "neurons", "spikes", "firing rate", "SOPs dense", "effective ACs", "effective MACs"],
            [
                [l["name"], l["kind"], fmt(l["neurons"]), fmt(l["spikes"]),
                 fmt(l["firing_rate"]) if l["neuron_model"] else "n/a (read-out)",
                 fmt(l["sops_dense"]), fmt(l["sops_effective_ac"]), fmt(l["sops_effective_mac"])]
                for l in data["layers"]
            ],
        ),
        ("Profiles", SUMMARY_HEADER, summary_rows(data)),
    ]
    if data["host"]:
        tables.append(
            (
                "Host partitions",
                ["partition", "MACs / sample", "buffer timesteps", "causal"],
                [[h["name"], fmt(h["macs"]), fmt(h["buffer_timesteps"]), fmt(h["causal"])] for h in data["host"]],
            )
        )
    if data.get("accuracy"):
        tables.insert(0, (
            "Task accuracy (the simulated network, on the target's labels)",
            ["arithmetic", "accuracy", "samples"],
            [[mode, fmt(a["accuracy"]), fmt(a["samples"])] for mode, a in data["accuracy"].items()],
        ))
    violations = [
        [name, v["layer"], v["constraint"], violation_text(v, with_layer=False)] for name, p in data["profiles"].items() for v in p["violations"]
    ]
    tables.append(("Violations", ["profile", "layer", "constraint", "what is wrong"], violations))
    per_layer = [
        [name, layer, str(cores), "-"] for name, p in data["profiles"].items() for layer, cores in (p.get("layer_cores") or {}).items()
    ] + [
        [name, layer, "1", str(core)] for name, p in data["profiles"].items() for layer, core in (p.get("placement") or {}).items()
    ]
    if per_layer:
        tables.append(("Cores per layer (as the chip's toolchain maps them)", ["profile", "layer", "cores", "core index"], per_layer))
    tables.append(
        (
            "Unchecked constraints (limit unknown for the profile)",
            ["profile", "fits", "unchecked constraints"],
            [[name, p["verdict"], ", ".join(p["unchecked"])] for name, p in data["profiles"].items() if p["unchecked"]],
        )
    )
    energy_rows = []
    for name, p in [*data["profiles"].items(), ("paper convention (ann-45nm)", {"energy_j": data["paper_convention"]})]:
        e = p["energy_j"]
        terms = "; ".join(
            f"{k} {'unknown' if t is None else interval(t['value'], t['low'], t['high'], 'J')}" for k, t in e["terms"].items()
        )
        dominant = ", ".join(e["dominant"]) or "none (no interval)"
        d = e.get("dynamic")
        dynamic = "unknown" if d is None else interval(d["value"], d["low"], d["high"], "J")
        energy_rows.append([name, e["estimator"], e["formula"], terms, energy_total(e), dynamic, dominant])
    tables.append(("Energy per sample", ["profile", "estimator", "formula", "terms", "total", "without static", "interval from"], energy_rows))
    tables.append(
        (
            "Figures used (H: vendor or primary source, M: secondary or derived, L: press or generic bound)",
            ["profile", "figure", "value", "confidence", "derived from", "source"],
            [
                [name, figure, interval(f["value"], f.get("low"), f.get("high")), f["confidence"] or "-", f.get("derived_from") or "-", f["source"]]
                for name, p in data["profiles"].items()
                for figure, f in p["figures"].items()
            ],
        )
    )
    measurements = [
        [name, key, f"{fmt(m['value'])} {m['unit']}", m["network"], m["source"]]
        for name, p in data["profiles"].items()
        for key, m in (p.get("measurements") or {}).items()
    ]
    if measurements:
        tables.append(("Measurements the derived figures come from", ["profile", "measurement", "value", "network", "source"], measurements))
    return tables


def _title(data: dict) -> tuple[str, str]:
    budget = "none" if data["budget_ms"] is None else f"{data['budget_ms']} ms"
    fit_check = "passed" if data["checks"]["fit"] else "failed"
    partly = [name for name, p in data["profiles"].items() if p["fits"] and p["unchecked"] and p["kind"] != "baseline"]
    if data["checks"]["fit"] and partly:
        fit_check += f" with unchecked constraints ({', '.join(partly)})"
    budget_check = {None: "not asked", True: "passed", False: "failed"}[data["checks"]["budget"]]
    totals = data["totals"]
    line = (
        f"Schema {data['schema_version']}; per sample, averaged over {totals['samples']} samples; "
        f"T = {totals['timesteps']}; latency budget {budget}; fit check {fit_check}, budget check {budget_check}. "
        f"Activity: {data['activity']}. Layers: {data['lowering']}."
    )
    return f"spikeport report: {data['network']}", line


def markdown(data: dict, plots: list[str] = ()) -> str:
    """`plots`: paths of the plot images relative to report.md, linked under the title."""
    title, line = _title(data)
    out = [f"# {title}", "", line, ""]
    if plots:
        out += ["## Plots", ""] + [f"![{path.rsplit('/', 1)[-1][:-4].replace('_', ' ')}]({path})" for path in plots] + [""]
    for name, header, rows in sections(data):
        out += [f"## {name}", ""]
        if not rows:
            out += ["none", ""]
            continue
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def html(data: dict, images: dict[str, bytes]) -> str:
    esc = html_lib.escape
    title, line = _title(data)
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        (
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:48%}</style>"
        ),
        f"</head><body><h1>{esc(title)}</h1><p>{esc(line)}</p>",
    ]
    for name, png in images.items():
        encoded = base64.b64encode(png).decode("ascii")
        out.append(f"<img alt='{esc(name)}' src='data:image/png;base64,{encoded}'>")
    for name, header, rows in sections(data):
        out.append(f"<h2>{esc(name)}</h2>")
        if not rows:
            out.append("<p>none</p>")
            continue
        out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows]
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
