"""``vlprobe`` command line: train, make-demo-data, extract, pretrain, inspect, verify, report,
dashboard, show.

``train`` is ``python train_probe.py`` (the same Hydra app, :mod:`vlprobe.train_probe`):
``vlprobe train task=visual_relation`` works from any folder once vlprobe is installed.
``extract`` takes Hydra overrides like ``train_probe.py`` (``vlprobe extract model=lxmert
data=real data.root=/data dataset=flickr30k``), composed from configs/extract.yaml.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _make_demo_data(args: argparse.Namespace) -> int:
    from vlprobe.synthetic.stamp import build_demo

    out = Path(args.out)
    build_demo(
        out,
        scenes=args.scenes,
        seed=args.seed,
        feature_dim=args.feature_dim,
        force=True,
        key="--out",
        render_images=not args.no_images,
    )
    print(f"VALUE-mini demo data written to {out}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from pytorch_lightning.utilities import rank_zero_only

    from vlprobe.config import register_resolvers
    from vlprobe.extraction.pipeline import cache_path, run_extraction
    from vlprobe.intervention.settings import fitted
    from vlprobe.preflight import compose_checked
    from vlprobe.settings_check import check_values

    register_resolvers()
    cfg = compose_checked("extract", args.overrides)
    check_values(cfg)
    cfg = fitted(cfg)  # an intervened cache is named by its eraser (none: cfg as it is)
    out = Path(cfg.out) if cfg.get("out") else cache_path(cfg, cfg.dataset)
    check_extract_target(out)
    path = run_extraction(cfg, cfg.dataset, out)
    if rank_zero_only.rank == 0:  # with extraction.devices > 1 every rank runs this command
        print(f"cache written: {path}\ninspect it with: vlprobe inspect {path}")
    return 0


def check_extract_target(out: Path) -> None:
    """``out=`` must be new or a cache (a broken one is rebuilt): the cache replaces whatever
    is at ``out``, and ``out=notes.txt`` replaced the user's file."""
    import h5py

    if out.is_dir():
        raise IsADirectoryError(f"out={out} is a folder: give the cache's file name (<name>.h5)")
    if not out.exists():
        return
    if not h5py.is_hdf5(out):
        raise FileExistsError(
            f"out={out} exists and is not a cache: extraction would replace it; give a new "
            "file name (<name>.h5) or delete the file"
        )
    try:
        with h5py.File(out, "r") as f:
            ours = "schema_version" in f.attrs
    except OSError:  # an unreadable (truncated) HDF5 file: a broken cache to rebuild
        return
    if not ours:
        raise FileExistsError(
            f"out={out} is an HDF5 file vlprobe did not write: extraction would replace it; "
            "give a new file name (<name>.h5) or delete the file"
        )


def _pretrain(args: argparse.Namespace) -> int:
    from vlprobe.config import register_resolvers
    from vlprobe.extraction.pipeline import ensure_demo_data
    from vlprobe.preflight import compose_checked
    from vlprobe.pretrain.uniter_mini import pretrain_from_config
    from vlprobe.settings_check import check_values

    register_resolvers()
    cfg = compose_checked("extract", ["model=uniter_mini", *args.overrides])
    check_values(cfg)
    ensure_demo_data(cfg)
    folder = pretrain_from_config(cfg.model, force=args.force)
    print(f"uniter-mini: {folder}\nuse it with: python train_probe.py model=uniter_mini")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from vlprobe.cache.inspect import describe

    print(describe(args.cache))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from vlprobe.cache.verify import verify_lines

    out, err, code = verify_lines(args.cache)
    for line in out:
        print(line)
    for line in err:
        print(line, file=sys.stderr)
    return code


def _report(args: argparse.Namespace) -> int:
    from vlprobe.reporting.report import build_report, summary_text

    compare_by = [k.strip() for arg in args.compare_by or [] for k in arg.split(",") if k.strip()]
    report = build_report(args.runs, args.out, args.metric, compare_by)
    print(summary_text(report))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from vlprobe.dashboard import dashboard

    dry_run = Path(args.out) if args.dry_run else None
    preview = Path(args.preview) if args.preview else None
    print(dashboard(args.runs, args.project, args.entity, dry_run, args.name, preview))
    return 0


def _show(args: argparse.Namespace) -> int:
    from vlprobe.show import show

    images = Path(args.images) if args.images else None
    out = Path(args.out) if args.out else None
    print(f"figure: {show(Path(args.cache), args.example, args.layer, args.head, images, out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlprobe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser(
        "train",
        add_help=False,  # `vlprobe train --help` is Hydra's (groups, options, overrides)
        help="train probes: `python train_probe.py ARGS` from any folder (Hydra overrides, "
        "e.g. task=visual_relation; --multirun; --help)",
    )

    demo = sub.add_parser(
        "make-demo-data", help="write the synthetic VALUE-mini set (real formats)"
    )
    demo.add_argument("--out", required=True, help="output folder")
    demo.add_argument("--scenes", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--feature-dim", type=int, default=2048)
    demo.add_argument("--no-images", action="store_true", help="skip the PNG renders (ViLT)")
    demo.set_defaults(func=_make_demo_data)

    extract = sub.add_parser("extract", help="run a frozen model over a data set, write the cache")
    extract.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=lxmert")
    extract.set_defaults(func=_extract)

    pretrain = sub.add_parser(
        "pretrain",
        help="pre-train uniter-mini (MLM + ITM + MRFR + WRA) on the demo's training pairs",
    )
    pretrain.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. model.pretrain.steps=50"
    )
    pretrain.add_argument("--force", action="store_true", help="train again even if saved")
    pretrain.set_defaults(func=_pretrain)

    inspect = sub.add_parser("inspect", help="print a cache's schema, provenance, sizes, splits")
    inspect.add_argument("cache")
    inspect.set_defaults(func=_inspect)

    verify = sub.add_parser(
        "verify",
        help="check a cache fully: complete flag, every dataset, shapes vs offsets, every dataset "
        "and attribute read back against its checksum (exit 1 on a broken one)",
    )
    verify.add_argument("cache")
    verify.set_defaults(func=_verify)

    report = sub.add_parser(
        "report",
        help="aggregate runs over seeds: by-layer curves, heatmaps, tables (docs/report.md)",
    )
    report.add_argument(
        "runs", nargs="+", help="run, multirun or logs folders, or offline-run-* W&B folders"
    )
    report.add_argument("--out", default="report", help="output folder (default: ./report)")
    report.add_argument("--metric", default="test_acc", help="row column to report")
    report.add_argument(
        "--compare-by",
        action="append",
        metavar="KEY",
        help="config key(s) whose groups to compare, e.g. model.random_init (repeatable or "
        "comma-separated; default: every key that differs between runs)",
    )
    report.set_defaults(func=_report)

    board = sub.add_parser(
        "dashboard",
        help="build a W&B workspace from a sweep's runs: a section per task, panels grouped by "
        "the swept keys (docs/dashboards.md)",
    )
    board.add_argument("runs", nargs="+", help="sweep or run folders, or offline-run-* folders")
    board.add_argument("--project", required=True, help="the W&B project the runs are in")
    board.add_argument("--entity", help="W&B entity (default: your default entity)")
    board.add_argument("--name", default="vlprobe sweep", help="the workspace's name")
    board.add_argument(
        "--dry-run", action="store_true", help="write the panels as JSON (--out), save nothing"
    )
    board.add_argument("--out", default="dashboard.json", help="--dry-run's JSON file")
    board.add_argument(
        "--preview",
        metavar="PNG",
        help="draw what the panels show, from the runs' values, to PNG (--dry-run: next to "
        "--out unless given); docs/img/dashboard_preview.png is drawn this way",
    )
    board.set_defaults(func=_dashboard)

    look = sub.add_parser(
        "show",
        help="draw one head's attention from each phrase of an example over its image "
        "(boxes shaded by weight, gold regions outlined)",
    )
    look.add_argument("cache", help="a cache with phrases, regions and coref pairs (Flickr30k)")
    look.add_argument("--example", required=True, help="example id (examples/id) or row number")
    look.add_argument("--layer", type=int, required=True, help="attention layer, 1-based (L01)")
    look.add_argument("--head", type=int, required=True, help="head, 1-based (H01)")
    look.add_argument("--images", help="folder of <image id>.png/.jpg (default: boxes only)")
    look.add_argument("--out", help="PNG path (default: attention_<id>_LxxHyy.png)")
    look.set_defaults(func=_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # Hydra reads the rest, its logging set up as for train_probe.py
        from vlprobe.train_probe import cli

        cli(argv[1:])
        return 0
    from vlprobe.console import quiet_third_party

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_third_party()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"vlprobe {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
