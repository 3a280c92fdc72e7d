"""What every benchmark shares: the bench cache, composed configs, timers, tables, machine facts.

The scripts in ``bench/`` import this as ``_common`` (Python puts a script's own folder first on
``sys.path``). Caches are written once per ``--workdir`` and reused by every benchmark.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from vlprobe.cache.schema import SPLIT_IDS
from vlprobe.testing.planted import write_planted_relation_cache

DEFAULT_WORKDIR = Path(os.environ.get("VLPROBE_BENCH_DIR", "/tmp/vlprobe-bench"))
ACTIVATIONS = ("units/region/embedding", "pairs/relation/attention")


@dataclass(frozen=True)
class CacheSpec:
    """Size of a bench cache: Visual-Genome-like relation pairs over a BERT-base-sized model."""

    num_images: int = 2500  # x 8 pairs = 20,000 relation pairs, 16,000 of them for training
    num_layers: int = 12  # attention layers: 13 hidden-state layers, 12 x 12 = 144 heads
    num_heads: int = 12
    hidden_size: int = 768
    seed: int = 0

    @property
    def num_pairs(self) -> int:
        return self.num_images * 8

    def scaled(self, factor: float) -> CacheSpec:
        return replace(self, num_images=max(20, round(self.num_images * factor)))

    def file_name(self) -> str:
        return (
            f"graded_i{self.num_images}_l{self.num_layers}_h{self.num_heads}"
            f"_d{self.hidden_size}_s{self.seed}.h5"
        )


FULL = CacheSpec()
QUICK = CacheSpec(num_images=60, num_layers=2, num_heads=2, hidden_size=16)


def layer_strengths(num_hidden_layers: int) -> np.ndarray:
    """Signal strength per hidden layer (in noise standard deviations): weak at both ends,
    strongest in the middle, so test accuracies spread from near chance to near 100%."""
    pos = np.arange(num_hidden_layers) / max(1, num_hidden_layers - 1)
    return 0.3 + 2.7 * np.sin(np.pi * pos) ** 2


def write_graded_cache(spec: CacheSpec, path: Path) -> Path:
    """A planted relation cache whose signal is graded over every layer and head.

    ``write_planted_relation_cache`` (an ordinary cache, written through ``CacheWriter``)
    with no embedding signal, then, in place: each subject region's embedding gets its pair's
    label direction scaled by :func:`layer_strengths`, and every head's s->o attention a
    random small lift for related pairs (one head keeps the planted strong lift). Graded
    signals make accuracy comparisons meaningful: no probe sits at pure chance.
    """
    layers = spec.num_layers
    tmp = path.with_name(path.name + ".tmp")
    write_planted_relation_cache(
        tmp,
        num_images=spec.num_images,
        num_layers=layers,
        num_heads=spec.num_heads,
        hidden_size=spec.hidden_size,
        signal_layer=layers // 2,
        signal_head=(max(1, layers // 2), spec.num_heads // 2),
        strength=0.0,
        seed=spec.seed,
    )
    rng = np.random.default_rng(spec.seed + 1)
    with h5py.File(tmp, "r+") as f:
        subject = f["pairs/relation/subject"][()]
        related = f["pairs/relation/related"][()].astype(bool)
        predicate = f["pairs/relation/predicate"][()]
        label = np.where(related, predicate, predicate.max() + 1)
        direction = rng.normal(size=(label.max() + 1, spec.hidden_size))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        emb = f["units/region/embedding"]
        for layer, strength in enumerate(layer_strengths(layers + 1)):
            rows = emb[layer].astype(np.float32)
            rows[subject] += strength * direction[label]
            emb[layer] = rows
        att = f["pairs/relation/attention"]
        values = att[()].astype(np.float32)
        lift = 0.12 * rng.uniform(0, 1, size=(layers, spec.num_heads)) ** 2
        strong = values[:, :, :, 0].std(0) > 0.1  # the planted head: leave it as it is
        values[:, :, :, 0] += np.where(strong, 0.0, lift)[None] * related[:, None, None]
        att[...] = values
        f.attrs["extraction_settings"] = json.dumps({"planted": True, "graded": asdict(spec)})
    tmp.replace(path)
    return path


def ensure_cache(workdir: Path, spec: CacheSpec, log: bool = True) -> Path:
    """The bench cache for ``spec`` under ``workdir``, written on first use."""
    path = Path(workdir) / spec.file_name()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_graded_cache(spec, path)
        if log:
            size = path.stat().st_size / 2**20
            took = time.perf_counter() - started
            print(f"wrote {path} ({size:.0f} MiB, {spec.num_pairs} pairs) in {took:.1f} s")
    return path


def rechunked_copy(src: Path, dst: Path, chunk_rows: int) -> Path:
    """Copy a cache with its probe activations chunked ``chunk_rows`` rows at a time.

    Every dataset but ``tokens/hidden`` (no probe here reads it) is copied; the two activation
    datasets are re-created with the new chunk shape (full feature rows, one layer each).
    """
    if dst.exists():
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    from vlprobe.cache.reader import cache_parts

    with h5py.File(src, "r") as fin, h5py.File(tmp, "w") as fout:
        fout.attrs.update(dict(fin.attrs))
        fout.attrs["parts"] = json.dumps(sorted(cache_parts(fin) - {"token_states"}))

        def visit(name: str, obj: Any) -> None:
            if not isinstance(obj, h5py.Dataset) or name == "tokens/hidden":
                return
            if name not in ACTIVATIONS:
                fin.copy(obj, fout.require_group(str(Path(name).parent)), Path(name).name)
                return
            lead = 1 if name == "units/region/embedding" else 0
            axis_rows = obj.shape[lead]
            chunks = (1,) * lead + (min(chunk_rows, axis_rows),) + obj.shape[lead + 1 :]
            out = fout.create_dataset(name, shape=obj.shape, dtype=obj.dtype, chunks=chunks)
            step = 8192
            for lo in range(0, axis_rows, step):
                index = (slice(None),) * lead + (slice(lo, lo + step),)
                out[index] = obj[index]

        fin.visititems(visit)
    tmp.replace(dst)
    return dst


def relation_views(path: Path, inputs: Sequence[str], layers: list[int] | None = None) -> dict:
    """``{input: view}`` of the identification subtask (related or not, balanced)."""
    from probes.tasks.visual_relation import VisualRelationTask
    from vlprobe.cache.reader import CacheReader

    task = VisualRelationTask(subtasks=("identification",), inputs=tuple(inputs))
    return {name.split("/")[1]: view for name, view in task.views(CacheReader(path), layers)}


def split_rows(view: Any, split: str) -> np.ndarray:
    return view.rows(SPLIT_IDS[split])


# ---------------------------------------------------------------------------- configs
def compose_cfg(overrides: list[str], output_dir: Path) -> Any:
    """The real ``train_probe`` config (as the tests compose it), output under ``output_dir``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from vlprobe.config import config_dir, register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "train_probe",
            overrides=["trainer=cpu", "logger=none", *overrides],
            return_hydra_config=True,
        )
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.trainer.enable_progress_bar = False
    return cfg


# ---------------------------------------------------------------------------- runtime
def quiet() -> None:
    """Lightning's banners and 'few workers' hints would drown the tables."""
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def set_threads(threads: int) -> None:
    """Same intra-op thread count for every contender (torch and numpy/BLAS)."""
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover - sklearn brings threadpoolctl
        pass


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def timed() -> Iterator[Timing]:
    """Wall-clock and this process's CPU seconds of the block."""
    t = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield t
    finally:
        t.wall, t.cpu = time.perf_counter() - wall, time.process_time() - cpu


def peak_rss_mib() -> float:
    """Peak resident set size of this process, in MiB.

    ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``execve``, so a child started from a
    big parent reports the parent's size at the fork (measured here: 1.3 GiB for a run that
    peaked at 0.45 GiB). Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 2**20 if platform.system() == "Darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def machine() -> dict[str, Any]:
    """The facts a reader needs to judge the numbers."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "h5py": h5py.__version__,
    }


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="caches go here")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the number of images (1.0 = 20k pairs)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch/BLAS intra-op threads for every contender"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")


def spec_from(args: argparse.Namespace) -> CacheSpec:
    return QUICK if args.quick else FULL.scaled(args.scale)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A Markdown table (pastes into docs/performance.md as it is)."""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    lines = [f"\n### {title}", "", "| " + " | ".join(columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def finish(args: argparse.Namespace, name: str, result: dict[str, Any]) -> dict[str, Any]:
    """Attach machine facts and arguments; write JSON when asked."""
    result = {
        "benchmark": name,
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        **result,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    m = result["machine"]
    print(
        f"\nmachine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, "
        f"load {m['load_avg_1m']}, torch {m['torch']} x{m['torch_threads']} threads",
        flush=True,
    )
    return result
