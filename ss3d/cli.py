"""The ``ss3d`` command line: ``ss3d <stage> --config experiments/X.yaml [--set key=value ...]``.

The notebooks call the same library functions as these subcommands. A subcommand imports what
it runs when it runs (torch, MLflow and the stages are slow to import), so ``ss3d --help`` and
``ss3d config`` answer at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ss3d.config import (
    CATEGORY_KEYS,
    ConfigError,
    ExperimentConfig,
    dump_yaml,
    load_config,
    parse_set_args,
)
from ss3d.data.locks import LockedError
from ss3d.files import WriteError
from ss3d.notebooks import NotebookError

log = logging.getLogger("ss3d")


def _set_overrides(items: list[str] | None) -> dict[str, Any]:
    """:func:`parse_set_args`, but category keys keep their text: YAML 1.1 reads an unquoted
    synset id such as ``04256520`` as the octal number 1138000."""
    out = parse_set_args(items)
    for item in items or []:
        key, _, text = item.partition("=")
        if key.strip() in CATEGORY_KEYS and text:
            try:
                out[key.strip()] = yaml.load(text, Loader=yaml.BaseLoader)  # strings only
            except yaml.YAMLError:
                pass  # parse_set_args kept the text
    return out


DEFAULT_CONFIG = "experiments/smoke.yaml"


def _config_path(given: str | None) -> Path | None:
    """``--config`` as given; without it the embedded default, found from any working folder
    (the repository's ``experiments/smoke.yaml``, else the built-in defaults it mirrors)."""
    if given is not None:
        return Path(given)
    from ss3d.files import repo_root  # not ss3d.tracking: MLflow is a second to import

    for candidate in (Path(DEFAULT_CONFIG), repo_root() / DEFAULT_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def _load(args: argparse.Namespace) -> ExperimentConfig:
    return load_config(_config_path(args.config), _set_overrides(args.set))


def _cmd_config(args: argparse.Namespace) -> int:
    """Print the fully resolved config (defaults + YAML + --set), or with ``--fields`` every key
    with its type, value and documentation."""
    cfg = _load(args)
    if not args.fields:
        print(dump_yaml(cfg), end="")
        return 0
    from ss3d.config import describe_fields

    for row in describe_fields(cfg):
        if not row["type"]:
            print(f"\n{row['key']}: {row['help']}")
            continue
        print(f"  {row['key']} ({row['type']}) = {row['value']}")
        if row["help"]:
            print(textwrap.fill(row["help"], width=96, initial_indent="      ",
                                subsequent_indent="      "))
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from ss3d.stages.data import render_stage

    cfg = _load(args)
    if args.shard:
        cfg.render.shard = args.shard
    result = render_stage(cfg, merge_only=args.merge, with_collections=not args.no_collections)
    render = result.summary.get("render", {})
    if render.get("views"):
        print(f"rendered {render['views']} views of {render['models_rendered']} models at "
              f"{cfg.render.image_size}x{cfg.render.image_size}: "
              f"{render['views_per_second']:.1f} views/s")
    for cat, count in result.summary.get("models", {}).items():
        print(f"  {cat}: {count} models")
    for name, info in result.summary.get("collections", {}).items():
        print(f"  collection {name}: {info['images']} images, {info['skipped']} skipped")
    print(f"data in {result.paths.root}; MLflow run {result.run_id}")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from ss3d.stages.data import ingest_stage

    cfg = _load(args)
    result = ingest_stage(cfg, cub_root=args.cub, csv_path=args.csv, name=args.name,
                          category=args.category)
    for name, info in result.summary.items():
        print(f"{name}: {info['images']} images -> {info['path']}; skipped {info['skipped']} "
              f"{info['skipped_reasons'] or ''}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ss3d.stages.pretrain import pretrain_stage

    cfg = _load(args)
    result = pretrain_stage(cfg, renders=args.renders, resume=args.resume or False)
    final = result.validation[-1] if result.validation else {}
    b = result.baselines
    print(f"pre-training done in {result.wall_seconds:.0f}s; checkpoint {result.checkpoint}")
    if final:
        print(f"held-out novel views: mask IoU {final['mask_iou']:.3f}, PSNR "
              f"{final['psnr']:.2f} dB (untrained {b.get('untrained_mask_iou', 0):.3f}, "
              f"mean sphere {b.get('sphere_mask_iou', 0):.3f})")
    print(f"MLflow run {result.run_id}")
    return 0


def _cmd_selftrain(args: argparse.Namespace) -> int:
    from ss3d.stages.selftrain import selftrain_stage, single_hypothesis_ablation

    cfg = _load(args)
    result = selftrain_stage(cfg, pretrained=args.pretrained, resume=args.resume or False)
    print(f"self-training {cfg.selftrain.category} done in {result.wall_seconds:.0f}s; "
          f"checkpoint {result.checkpoint}")
    _print_selftrain(f"H = {cfg.selftrain.hypotheses}", result)
    if args.ablation:
        single = single_hypothesis_ablation(cfg, result, pretrained=args.pretrained)
        print(f"H = 1 ablation done in {single.wall_seconds:.0f}s; checkpoint "
              f"{single.checkpoint}")
        _print_selftrain("H = 1", single)
    return 0


def _print_selftrain(label: str, result: Any) -> None:
    final = result.epochs[-1] if result.epochs else {}
    line = f"{label}: "
    if final:
        line += f"mask IoU (chosen cameras) {final['mask_iou']:.3f}"
        if "pose_acc30" in final:
            line += (f"; pose acc@30 {final['pose_acc30']:.2f}, best-of-H "
                     f"{final['pose_best_of_h_acc30']:.2f}")
    print(f"{line}; MLflow run {result.run_id}")


def _parse_teachers(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--teacher {item!r}: expected NAME=CHECKPOINT")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _cmd_distill(args: argparse.Namespace) -> int:
    from ss3d.stages.distill import distill_stage

    cfg = _load(args)
    result = distill_stage(cfg, teachers=_parse_teachers(args.teacher),
                           resume=args.resume or False)
    print(f"distillation ({cfg.distill.mode}) done in {result.wall_seconds:.0f}s; checkpoint "
          f"{result.checkpoint}")
    for cat, after in result.agreement.items():
        print(f"  {cat}: student-teacher mask IoU {result.agreement_before.get(cat, 0):.3f} -> "
              f"{after:.3f}")
    print(f"MLflow run {result.run_id}; registered ss3d-unified version {result.model_version}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ss3d.stages.evaluate import evaluate_stage

    cfg = _load(args)
    result = evaluate_stage(cfg, progress=True)
    print(f"evaluation done in {result.wall_seconds:.0f}s; MLflow run {result.run_id}")
    for note in result.skipped:
        print(f"  not evaluated: {note}")
    return 0


def _cmd_transfer(args: argparse.Namespace) -> int:
    from ss3d.stages.transfer import transfer_stage

    cfg = _load(args)
    result = transfer_stage(cfg, models_per_category=args.models_per_category, progress=True)
    print(f"appearance transfer done in {result.wall_seconds:.0f}s; MLflow run {result.run_id}")
    return 0


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from ss3d.reconstruct import pair_inputs, reconstruct, reconstruct_many

    cfg = _load(args)
    pairing = pair_inputs(args.image, args.mask, args.image_pattern, args.mask_pattern)
    pairs = pairing.pairs
    if len(pairs) == 1 and not Path(args.image[0]).is_dir():  # one image: -o is the mesh file
        result = reconstruct(args.image[0], args.mask[0], args.model, args.output,
                             args.turntable, cfg, device=cfg.optim.device)
        print(f"{result.obj}: {result.mesh.verts.shape[0]} vertices, "
              f"{result.mesh.faces.shape[0]} faces ({result.model}); {result.fit_line()}")
        if result.turntable:
            print(f"{result.turntable}: turntable")
        return 0
    if args.turntable not in (None, "yes"):
        raise ValueError("with several inputs, --turntable takes no path (GIFs are written "
                         "beside the meshes): use --turntable yes")
    print(pairing.summary())
    done, skipped = reconstruct_many(pairs, args.model, args.output,
                                     turntables=args.turntable == "yes", cfg=cfg,
                                     device=cfg.optim.device)
    print(f"{len(done)} mesh(es) in {args.output} ({done[0].model if done else args.model})")
    for result in done:
        print(f"  {result.obj.name}: {result.fit_line()}")
    for image, reason in skipped.items():
        print(f"  skipped {image}: {reason}")
    return 0 if done else 2


def _cmd_report(args: argparse.Namespace) -> int:
    from ss3d.report import write_report

    cfg = _load(args)
    index = write_report(cfg, out_dir=args.output)
    print(f"report written: {index}")
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from ss3d.pipeline import run_pipeline

    config = _config_path(args.config)
    if config is None:
        raise FileNotFoundError(f"no --config given and no {DEFAULT_CONFIG} here or in the "
                                "repository")
    run_pipeline(config, overrides=_set_overrides(args.set),
                 output_dir=Path(args.output) if args.output else None)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ss3d.sweep import load_sweep, run_sweep, submit_slurm
    from ss3d.sweep_report import aggregate, collect, markdown_table, write_sweep_report

    spec = load_sweep(args.file)
    if args.slurm:
        for line in submit_slurm(spec, args.file):
            print(line)
        return 0
    failed: list[str] = []
    if not args.report_only:
        failed = run_sweep(spec, jobs=args.jobs, only=args.child).failed
    if not args.no_report:
        results, missing = collect(spec)
        if not results:  # an empty report would read as a result
            from ss3d.sweep import SweepError

            raise SweepError(f"{args.file}: no finished child to report on ("
                             f"{len(missing)} missing); run the sweep first"
                             + (f" ({len(failed)} children failed: {', '.join(failed)})"
                                if failed else ""))
        summary = aggregate(spec, results, missing)
        print(markdown_table(summary))
        print(f"report: {write_sweep_report(spec, summary, args.output) / 'index.html'}")
    if failed:
        print(f"ss3d: {len(failed)} children failed: {', '.join(failed)} (a rerun retries "
              "only them)", file=sys.stderr)
    return 1 if failed else 0


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least one child runs at a time (>= 1)")
    return value


def _add_sweep(sub: Any) -> None:
    text = ("run a sweep (experiments/sweeps/*.yaml): variants x seeds as MLflow child runs, "
            "then the aggregate report (reports/sweeps/<name>/)")
    p = sub.add_parser("sweep", help=text, description=text)
    p.add_argument("file", help="sweep file")
    p.add_argument("--jobs", "-j", type=_at_least_one, default=1,
                   help="children run at once, each in its own process (default: %(default)s)")
    p.add_argument("--child", type=int, nargs="+", metavar="K",
                   help="run only these children (0-based, variant-major; a SLURM array task)")
    p.add_argument("--slurm", action="store_true", help="submit the children as a SLURM job "
                   "array (experiments/slurm/sweep.sbatch) and the report after them")
    p.add_argument("--report-only", action="store_true",
                   help="only aggregate the finished children and write the report")
    p.add_argument("--no-report", action="store_true", help="run the children only")
    p.add_argument("--output", "-o", help="report folder (default: reports/sweeps/<name>)")
    p.set_defaults(func=_cmd_sweep)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=None,
                   help=f"experiment YAML (default: the repository's {DEFAULT_CONFIG})")
    p.add_argument("--set", "-s", action="append", metavar="KEY=VALUE",
                   help="dotted override, e.g. --set model.hidden=128 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ss3d", description="Pre-train, Self-train, Distill: single-view 3D reconstruction.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    commands: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        "config": (_cmd_config, "print the resolved config of an experiment"),
        "render": (_cmd_render, "generate/render the experiment's synthetic data to HDF5"),
        "ingest": (_cmd_ingest, "ingest a CUB-200-2011 folder or a generic CSV into HDF5"),
        "pretrain": (_cmd_pretrain, "pre-train on the synthetic renders (known cameras)"),
        "selftrain": (_cmd_selftrain, "self-train one category with multi-hypothesis cameras"),
        "distill": (_cmd_distill, "distil all category models into one unified model"),
        "evaluate": (_cmd_evaluate, "evaluate every stage of an experiment (3D metrics, "
                     "poses, baselines)"),
        "transfer": (_cmd_transfer, "evaluate the pre-trained and distilled models on the test "
                     "inputs under other appearance sets (textures, lights, camera)"),
        "reconstruct": (_cmd_reconstruct, "reconstruct a mesh (and a turntable GIF) from one "
                        "image and its mask"),
        "report": (_cmd_report, "write reports/<experiment>/ (index.html, README.md)"),
        "pipeline": (_cmd_pipeline, "run the notebooks 00 → 04 through papermill"),
    }
    for name, (func, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_common(p)
        p.set_defaults(func=func)
        if name == "config":
            p.add_argument("--fields", action="store_true",
                           help="list every key with its type, value and documentation")
        if name == "render":
            p.add_argument("--shard", help="'i/N': render only shard i of N (cluster arrays)")
            p.add_argument("--merge", action="store_true",
                           help="only merge finished shards into the final files")
            p.add_argument("--no-collections", action="store_true",
                           help="skip the rendered 'photo' collections")
        if name == "transfer":
            p.add_argument("--models-per-category", type=int, default=None,
                           help="test models per category (default: "
                                "evaluate.models_per_category)")
        if name == "ingest":
            p.add_argument("--cub", help="CUB-200-2011 root (images/, segmentations/, ...)")
            p.add_argument("--csv", help="CSV with columns category,rgb,mask[,x0,y0,x1,y1]")
            p.add_argument("--name", help="collection name (default: from the source)")
            p.add_argument("--category", default="bird",
                           help="category of a CUB-layout folder (default: %(default)s)")
        if name == "pretrain":
            p.add_argument("--renders", help="rendered-set HDF5 (default: <data.root>/"
                           "renders.h5 of the config)")
            p.add_argument("--resume", nargs="?", const=True, metavar="CHECKPOINT",
                           help="continue from <output_dir>/<name>/pretrain/last.pt (or the "
                           "given checkpoint), in the same MLflow run")
        if name == "selftrain":
            p.add_argument("--pretrained", help="pre-trained checkpoint (default: the "
                           "experiment's latest pre-training run)")
            p.add_argument("--resume", nargs="?", const=True, metavar="CHECKPOINT",
                           help="continue from the last self-training checkpoint")
            p.add_argument("--ablation", action="store_true",
                           help="then run H = 1 with the same budget (the multi-hypothesis "
                           "check), as its own MLflow run")
        if name == "distill":
            p.add_argument("--teacher", action="append", metavar="NAME=CHECKPOINT",
                           help="teacher override: 'synthetic' or a collection category "
                           "(repeatable; default: the experiment's latest MLflow runs)")
            p.add_argument("--resume", nargs="?", const=True, metavar="CHECKPOINT",
                           help="continue from <output_dir>/<name>/distill/last.pt")
        if name == "reconstruct":
            p.add_argument("image", nargs="+", help="RGB image(s) (any format OpenCV reads), "
                           "or one folder of images")
            p.add_argument("--mask", nargs="+", required=True, help="object mask image(s) "
                           "(black background, white object), one per image in the same "
                           "order, or a folder: the image folder's masks by name (see "
                           "--mask-pattern; the image folder itself with two patterns)")
            p.add_argument("--image-pattern", default="{id}", help="folders: the images' "
                           "file names, the part shared with the mask as {id} (e.g. 'rgb_{id}'; "
                           "default: the whole name)")
            p.add_argument("--mask-pattern", default="{id}", help="folders: the masks' file "
                           "names (e.g. 'mask_{id}' pairs mask_3.png with rgb_3.jpg; default: "
                           "the image's name)")
            p.add_argument("--model", default="ss3d-unified",
                           help="checkpoint path, MLflow run id or registered model "
                           "('ss3d-unified' or 'ss3d-unified/VERSION'; default: %(default)s)")
            p.add_argument("--output", "-o", required=True, help="mesh to write (.obj); with "
                           "several inputs, a folder (<image name>.obj each)")
            p.add_argument("--turntable", help="also write a turntable GIF here (several "
                           "inputs: 'yes' writes <image name>.gif beside each mesh)")
        if name == "report":
            p.add_argument("--output", "-o", help="report folder (default: reports/<name>)")
        if name == "pipeline":
            p.add_argument("--output", "-o", help="folder for executed notebooks "
                           "(default: outputs/<experiment>/notebooks)")
    _add_sweep(sub)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix (one line, no traceback). A checkpoint error can only
    have been raised once :mod:`ss3d.engine` was imported, so it is looked up, not imported."""
    engine, tracking = sys.modules.get("ss3d.engine"), sys.modules.get("ss3d.tracking")
    return (FileNotFoundError, ValueError, NotebookError, WriteError, LockedError,
            *((engine.CheckpointError,) if engine is not None else ()),
            *((tracking.TrackingError,) if tracking is not None else ()))


def _quiet_third_parties() -> None:
    """Without ``-v``: other packages' warnings and log chatter stay off the terminal (OpenCV's
    ``[ WARN ]`` lines, Pillow's decompression-bomb warning, urllib3's retries, MLflow's logged
    SQL tracebacks); ss3d's own messages and the one-line error remain."""
    warnings.simplefilter("ignore")
    warnings.filterwarnings("default", module=r"ss3d(\.|$)")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # read when cv2 is imported
    if "cv2" in sys.modules:
        sys.modules["cv2"].utils.logging.setLogLevel(2)  # 2: errors only
    for name, level in (("OpenGL", logging.WARNING),  # an optional C speed-up is missing
                        ("urllib3", logging.ERROR), ("alembic", logging.WARNING),
                        ("mlflow.store", logging.CRITICAL)):
        logging.getLogger(name).setLevel(level)


def _one_line(err: BaseException) -> str:
    """An unforeseen error in one line: MLflow's with the store's URI and cause, others by
    their first line."""
    if type(err).__module__.startswith("mlflow") and "ss3d.tracking" in sys.modules:
        return sys.modules["ss3d.tracking"].describe_store_error(err)
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}" + (
        " [...]" if len(lines) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        _quiet_third_parties()
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"ss3d: config error: {err}", file=sys.stderr)
        return 2
    except _expected_errors() as err:
        if args.verbose:
            traceback.print_exc()
        print(f"ss3d: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ss3d: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # anything unforeseen: one line, the traceback with -v
        if args.verbose:
            traceback.print_exc()
            print(f"ss3d: error: {type(err).__name__}: {err}", file=sys.stderr)
        else:
            print(f"ss3d: error: {_one_line(err)} (run with -v for the traceback)",
                  file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
