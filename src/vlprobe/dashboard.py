"""``vlprobe dashboard``: a W&B workspace built from the runs of a sweep, as code.

A sweep's runs (probe family x model x seed ...) are compared in a workspace whose panels are
written here instead of clicked together: one section per task; per subtask a bar chart of the
probe chosen on validation (its validation and test accuracy, and chance) and, per probe kind,
test accuracy by layer with chance; each grouped by one swept key (mean over the runs of a
group, their spread shaded). The panels name only keys the runs logged (read from their offline
W&B folders), so a workspace never shows empty panels; ``--dry-run`` writes them as JSON, and
``--preview`` (by default with ``--dry-run``) a PNG of what they draw, without the W&B server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vlprobe.reporting.aggregate import IGNORED_KEYS
from vlprobe.reporting.wandb_offline import OfflineRun, read_offline_run
from vlprobe.reporting.wandb_publish import LAYER_STEP

#: a group of config keys and the one key that names it: when the named key varies, the
#: group's other keys vary with it (an MLP has a hidden_dim, a linear probe none) and are left
#: out of the swept keys
CANONICAL = {"probe": "probe.family.path", "model": "model.name", "data": "data.name"}


@dataclass
class Panel:
    """One panel: what it draws (``keys``: logged metrics), over ``x``, grouped by ``groupby``
    (a config key), in the section of ``section`` (a task)."""

    section: str
    title: str
    kind: str  # line | bar
    keys: list[str]
    x: str | None = None
    groupby: str | None = None


def find_wandb_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Offline W&B run folders (``offline-run-*``) at or under ``paths``, sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such folder (give a sweep or run folder)")
        if path.name.startswith("offline-run-"):
            found.append(path)
        else:
            found += [p for p in path.rglob("offline-run-*") if any(p.glob("run-*.wandb"))]
    if not found:
        raise ValueError(
            f"no offline W&B run (offline-run-*/run-*.wandb) under {', '.join(map(str, paths))}: "
            "run train_probe.py with logger=wandb (the default) first"
        )
    return sorted(set(found))


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"probe": {"family": {"path": p}}}`` -> ``{"probe.family.path": p}`` (W&B's own
    ``_wandb`` entry left out)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key.startswith("_"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_config(value, f"{name}."))
        else:
            out[name] = value
    return out


def swept_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Config keys that every run has and whose value differs between runs: what the sweep
    varied, the seed last. Where and how a run logs (``IGNORED_KEYS`` but the seed) and per-run
    paths are left out; a group's other keys are left out when its naming key varies
    (``CANONICAL``); a key whose values copy another's (``task.sample_seed: ${seed}``, resolved
    in the logged config) is that axis once."""
    names = [
        k for k in dict.fromkeys(k for c in configs for k in c) if all(k in c for c in configs)
    ]
    ignored = [k for k in IGNORED_KEYS if k != "seed"]

    def varies(key: str) -> bool:
        values = [json.dumps(c.get(key), sort_keys=True) for c in configs]
        return len(set(values)) > 1

    def kept(key: str) -> bool:
        if any(key == k or key.startswith(f"{k}.") for k in ignored):
            return False
        values = [c.get(key) for c in configs]
        if all(isinstance(v, str) and v.startswith("/") for v in values if v is not None):
            return False  # a path per run (output folders)
        canonical = CANONICAL.get(key.split(".")[0])
        return key == canonical or canonical is None or not varies(canonical)

    swept: dict[str, tuple[str, ...]] = {}  # key -> its values over the runs
    for key in (k for k in names if varies(k) and kept(k)):
        values = tuple(json.dumps(c.get(key), sort_keys=True) for c in configs)
        if values not in swept.values():  # a copy of another axis (task.sample_seed: ${seed})
            swept[key] = values
    return sorted(swept, key=lambda k: k == "seed")  # the replicate axis last


def task_of(run: OfflineRun) -> str:
    task = run.config.get("task")
    return str(task.get("name")) if isinstance(task, dict) else "run"


def logged_keys(run: OfflineRun) -> set[str]:
    return run.history_keys() | set(run.summary)


def build_panels(runs: Sequence[OfflineRun]) -> list[Panel]:
    """Per task: a bar chart per subtask and a line chart per subtask and probe kind, each
    once per swept key. A metric is drawn only when every run of the task logged it."""
    panels: list[Panel] = []
    by_task: dict[str, list[OfflineRun]] = {}
    for run in runs:
        by_task.setdefault(task_of(run), []).append(run)
    for task, group in by_task.items():
        configs = [flat_config(r.config) for r in group]
        groupbys: list[str | None] = list(swept_keys(configs)) or [None]
        common = set.intersection(*(logged_keys(r) for r in group))
        subtasks = sorted(
            k.split("/")[1]
            for k in common
            if k.startswith("summary/") and k.endswith("/best_val_acc")
        )
        layer_keys = sorted(
            k for k in common if k.startswith("by_layer/") and k.endswith("/test_acc")
        )
        for groupby in groupbys:
            by = f", by {groupby}" if groupby else ""
            for subtask in subtasks:
                keys = [f"summary/{subtask}/{m}" for m in ("best_val_acc", "test_acc", "chance")]
                panels.append(
                    Panel(
                        task,
                        f"{subtask}: probe chosen on validation{by}",
                        "bar",
                        [k for k in keys if k in common],
                        None,
                        groupby,
                    )
                )
            for key in layer_keys:
                _, subtask, *series, _ = key.split("/")
                name = "/".join(series)
                what = "" if name == "layer" else f" ({name} probes)"  # the per-layer kind
                chance = key.rsplit("/", 1)[0] + "/chance"
                keys = [key, *([chance] if chance in common else [])]
                title = f"{subtask}{what}: test accuracy by layer{by}"
                panels.append(Panel(task, title, "line", keys, LAYER_STEP, groupby))
    return panels


def check_panels(panels: Sequence[Panel], runs: Sequence[OfflineRun]) -> None:
    """Every metric a panel names was logged, and every group key configured, by each run of
    its section; else one line naming the key."""
    for panel in panels:
        group = [r for r in runs if task_of(r) == panel.section]
        for key in [*panel.keys, *([panel.x] if panel.x else [])]:
            missing = [r.path for r in group if key not in logged_keys(r) | {LAYER_STEP}]
            if missing:
                raise ValueError(f"panel {panel.title!r}: {missing[0]} did not log {key}")
        if panel.groupby and any(panel.groupby not in flat_config(r.config) for r in group):
            raise ValueError(f"panel {panel.title!r}: a run has no config key {panel.groupby}")


def group_values(panel: Panel, runs: Sequence[OfflineRun]) -> dict[str, list[OfflineRun]]:
    """The runs of the panel's section by their value of its group key (one group without)."""
    groups: dict[str, list[OfflineRun]] = {}
    for run in runs:
        if task_of(run) == panel.section:
            value = flat_config(run.config).get(panel.groupby) if panel.groupby else "all runs"
            groups.setdefault(str(value).rsplit(".", 1)[-1], []).append(run)
    return groups


#: the preview draws at most this many panels (a sweep's first section), a row per swept key
PREVIEW_PANELS = 12


def draw_preview(panels: Sequence[Panel], runs: Sequence[OfflineRun], out: Path) -> Path:
    """A PNG of what the panels draw, from the runs' own values: bars (mean, min-max whiskers
    over a group's runs) and lines over the layer (mean over the runs that probed a layer,
    min-max band; chance dashed). The first section's panels, a row per swept key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [p for p in panels if p.section == panels[0].section][:PREVIEW_PANELS]
    cols = min(4, sum(p.groupby == shown[0].groupby for p in shown))
    rows = -(-len(shown) // cols)
    size = (4.2 * cols, 3.3 * rows + 0.3)
    # constrained: the suptitle and the panel titles must not overlap (tight_layout lets them)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")
    for ax, panel in zip(axes.flat, shown, strict=False):
        groups = group_values(panel, runs)
        for g, (value, members) in enumerate(sorted(groups.items())):
            if panel.kind == "bar":
                width = 0.8 / len(groups)
                for k, key in enumerate(panel.keys):
                    vals = np.array([float(r.summary[key]) for r in members])
                    x = k + (g - (len(groups) - 1) / 2) * width
                    err = [[vals.mean() - vals.min()], [vals.max() - vals.mean()]]
                    label = value if k == 0 else None
                    ax.bar(x, vals.mean(), width, yerr=err, color=f"C{g}", label=label)
                names = [k.rsplit("/", 1)[-1] for k in panel.keys]
                ax.set_xticks(range(len(panel.keys)), names, fontsize=8)
            else:
                for k, key in enumerate(panel.keys):
                    layers, mean, low, high = _layer_band([_curve(r, key) for r in members])
                    dashed = key.endswith("/chance")
                    style = {"ls": "--", "lw": 1} if dashed else {"marker": "o", "lw": 1.8}
                    label = value if k == 0 else None
                    ax.plot(layers, mean, color=f"C{g}", label=label, **style)
                    if not dashed:
                        ax.fill_between(layers, low, high, color=f"C{g}", alpha=0.2, lw=0)
                chance = any(k.endswith("/chance") for k in panel.keys)
                ax.set_xlabel(f"{panel.x}{' (dashed: chance)' if chance else ''}", fontsize=8)
                ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylim(0, 1.2)  # the legend above the [0, 1] range, clear of the data
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.tick_params(labelsize=8)
        ax.set_title(panel.title, fontsize=8)
        ax.legend(fontsize=7, loc="upper center", ncol=max(1, len(groups)), frameon=False)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle(f"{shown[0].section}: {len(runs)} runs (bars and lines: mean; whiskers, bands: "
                 "min-max over a group's runs)", fontsize=9)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _curve(run: OfflineRun, key: str) -> dict[int, float]:
    """``layer -> value`` of a by-layer history key."""
    return {int(h[LAYER_STEP]): float(h[key]) for h in run.history if key in h and LAYER_STEP in h}


def _layer_band(curves: Sequence[dict[int, float]]) -> tuple[list[int], Any, Any, Any]:
    """Layers any run probed, and per layer the mean, min and max over the runs that probed
    it: runs of one group may probe different layers (``probing.layers`` swept), as W&B's
    grouped line plot averages whatever runs have a point there."""
    import numpy as np

    layers = sorted({layer for c in curves for layer in c})
    values = [[c[layer] for c in curves if layer in c] for layer in layers]
    return (
        layers,
        np.array([np.mean(v) for v in values]),
        np.array([min(v) for v in values]),
        np.array([max(v) for v in values]),
    )


def build_workspace(panels: Sequence[Panel], project: str, entity: str, name: str) -> Any:
    """The ``wandb_workspaces`` workspace of ``panels``: one open section per task."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    sections: dict[str, list[Any]] = {}
    for p in panels:
        group = {"groupby": wr.Config(p.groupby)} if p.groupby else {}
        if p.groupby:
            group |= {"groupby_aggfunc": "mean", "groupby_rangefunc": "minmax"}
        if p.kind == "line":
            panel = wr.LinePlot(title=p.title, x=p.x, y=list(p.keys), range_y=(0, 1), **group)
        else:
            panel = wr.BarPlot(title=p.title, metrics=list(p.keys), range_x=(0, 1), **group)
        sections.setdefault(p.section, []).append(panel)
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name,
        sections=[ws.Section(name=t, panels=ps, is_open=True) for t, ps in sections.items()],
    )


def dashboard(
    paths: Sequence[str | Path],
    project: str,
    entity: str | None = None,
    dry_run: Path | None = None,
    name: str = "vlprobe sweep",
    preview: Path | None = None,
) -> str:
    """Build the workspace of the runs under ``paths``; with ``dry_run`` write its panels as
    JSON there instead of saving it to W&B. ``preview``: a PNG of what the panels draw (with
    ``dry_run``, next to its JSON unless given). Returns what was done, for the console."""
    runs = [read_offline_run(p) for p in find_wandb_runs(paths)]
    panels = build_panels(runs)
    if not panels:
        raise ValueError(
            "the runs logged no summary/<subtask>/* or by_layer/* keys: they predate "
            "vlprobe's dashboard metrics; run them again"
        )
    check_panels(panels, runs)
    workspace = build_workspace(panels, project, entity or "offline", name)
    lines = []
    if dry_run is not None:
        dry_run.parent.mkdir(parents=True, exist_ok=True)
        dry_run.write_text(json.dumps({"panels": [asdict(p) for p in panels]}, indent=2) + "\n")
        sections = len(workspace.sections)
        lines.append(
            f"{len(panels)} panels in {sections} section(s) from {len(runs)} runs: {dry_run}"
        )
        preview = preview or dry_run.with_suffix(".png")
    if preview is not None:
        lines.append(f"preview of the panels: {draw_preview(panels, runs, preview)}")
    if dry_run is not None:
        return "\n".join(lines)
    if entity is None:
        import wandb

        workspace.entity = wandb.Api().default_entity
    workspace.save()
    return "\n".join([*lines, f"workspace saved: {workspace.url}"])
