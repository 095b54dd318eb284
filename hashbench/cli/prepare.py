"""``hashbench prepare``: build the common data file from the real datasets, or import precomputed
features (.mat, HashNet lists) into it.

- ``hashbench prepare coco|nuswide``: MS-COCO and NUS-WIDE as the LAGNH paper prepares them (with aux);
- ``hashbench prepare PROTOCOL --root DIR [--backbone B]``: one of the standard protocols of
  :mod:`hashbench.datasets.protocols` (``hashbench prepare --help`` lists them), features from the
  backbone ``B`` of :mod:`hashbench.datasets.extract_models` (``vgg16-fc7`` by default);
- ``hashbench prepare import FILE --out data.npz``: precomputed features.

Extraction is long (VGG16 on 250k images); it shows progress, runs on CUDA with ``--device cuda``
and resumes after an interruption from the chunks kept in ``--work-dir``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from hashbench.cli.options import add_data_dir
from hashbench.datasets.cache import default_output
from hashbench.datasets.extract_models import DETECTORS, build_extractor


def add_commands(subparsers) -> None:
    """Add the ``prepare`` sub-commands to the ``hashbench`` parser."""
    prepare = subparsers.add_parser(
        "prepare", help="prepare MS-COCO / NUS-WIDE or a standard protocol, or import features"
    )
    kinds = prepare.add_subparsers(dest="dataset", metavar="DATASET", required=True)

    coco = kinds.add_parser("coco", help="MS-COCO 2017: VGG16 fc7 features, Faster R-CNN objects as aux")
    _add_extraction_options(coco, "COCO_DIR (train2017/, val2017/, annotations/instances_*.json)")
    coco.add_argument("--score-threshold", type=float, default=0.5, help="detection score for an aux object (0.5)")
    coco.add_argument("--detector", choices=sorted(DETECTORS), default="fasterrcnn_resnet50_fpn")
    coco.set_defaults(func=_run_coco)

    nus = kinds.add_parser("nuswide", help="NUS-WIDE: 21 most frequent concepts, VGG16 fc7, 1k user tags as aux")
    _add_extraction_options(nus, "NUS_DIR (Flickr/, ImageList/, Groundtruth/, NUS_WID_Tags/, Concepts81.txt)")
    nus.add_argument("--queries-per-concept", type=int, default=200)
    nus.set_defaults(func=_run_nuswide)

    from hashbench.datasets.extract_models import BACKBONES, DEFAULT_BACKBONE
    from hashbench.datasets.protocols import PROTOCOLS

    for spec in PROTOCOLS.values():
        parser = kinds.add_parser(
            spec.id,
            help=f"{spec.title}; MAP@{spec.topk}",
            description=f"{spec.title}. Used by: {spec.used_by}. Default MAP@{spec.topk}.",
        )
        _add_common_options(parser, _ROOT_HELP[spec.source])
        parser.add_argument(
            "--backbone",
            choices=list(BACKBONES),
            default=DEFAULT_BACKBONE,
            help=f"feature extractor (default {DEFAULT_BACKBONE})",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of the split draw (default 0)")
        parser.add_argument(
            "--query-size",
            type=int,
            help="override the protocol's query count (per class where it "
            "draws per class), e.g. for a miniature; the file records the departure",
        )
        parser.add_argument("--train-size", type=int, help="override the protocol's training count, likewise")
        parser.add_argument("--image-size", type=int, default=224, help="backbone input side (default 224)")
        parser.add_argument(
            "--untrained",
            action="store_true",
            help="randomly initialised backbone, no weights needed: for testing the pipeline only",
        )
        if spec.source == "cifar10":
            parser.add_argument("--download", action="store_true", help="download CIFAR-10 through torchvision first")
        if spec.draw == "lists":
            parser.add_argument(
                "--image-root", type=Path, help="folder the listed image paths' tails are under (default: --root)"
            )
        parser.set_defaults(func=_run_protocol, protocol=spec.id)

    importer = kinds.add_parser(
        "import",
        help="convert precomputed features (.mat, folder of .npy, HashNet lists) to the common .npz",
        description="Read a dataset in any format `hashbench.load_dataset` understands and write the common .npz.",
    )
    importer.add_argument("source", type=Path, help="a .mat file, a folder of .npy files, or a HashNet list folder")
    importer.add_argument("--out", type=Path, required=True, help="the .npz to write")
    importer.set_defaults(func=_run_import)


_ROOT_HELP = {
    "cifar10": "folder holding cifar-10-batches-py/ (the python version)",
    "nuswide": "NUS_DIR (Flickr/, ImageList/Imagelist.txt, Groundtruth/AllLabels/, Concepts81.txt)",
    "mirflickr": "folder holding mirflickr/im*.jpg and annotations/ (the 24 label files)",
    "mirflickr-bihalf": "folder holding Bi-half's img.txt, targets.txt and images/",
    "hashnet-coco": "folder holding HashNet's train.txt, test.txt, database.txt for MS-COCO",
    "hashnet-nuswide81": "folder holding HashNet's train.txt, test.txt, database.txt for NUS-WIDE (81)",
    "hashnet-imagenet100": "folder holding HashNet's train.txt, test.txt, database.txt for ImageNet-100",
}


def _add_extraction_options(parser, root_help: str) -> None:
    _add_common_options(parser, root_help)
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)


def _add_common_options(parser, root_help: str) -> None:
    parser.add_argument("--root", type=Path, required=True, help=root_help)
    parser.add_argument("--out", type=Path, help="output .npz (default: NAME.npz in the hashbench data folder)")
    add_data_dir(parser)
    parser.add_argument(
        "--work-dir", type=Path, help="where finished chunks are kept for resuming (default: OUT.parts)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=2048, help="images per resumable chunk")
    parser.add_argument("--weights-dir", type=Path, help="folder holding torchvision weight files (offline machines)")
    parser.add_argument("--no-download", action="store_true", help="never try to download weights")
    parser.add_argument("--float16", action="store_true", help="store features as float16 (half the size)")
    parser.add_argument("--quiet", action="store_true")


def _paths(args, name):
    out = args.out or default_output(name, args.data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out, args.work_dir or out.with_name(out.name + ".parts")


def _common(args) -> dict:
    return {
        "batch_size": args.batch_size,
        "chunk_size": args.chunk_size,
        "quiet": args.quiet,
        "features_dtype": np.float16 if args.float16 else np.float32,
    }


def _factory_options(args) -> dict:
    return {"weights_dir": args.weights_dir, "allow_download": not args.no_download, "device": args.device}


def _run_coco(args) -> None:
    from hashbench.datasets.coco import prepare_coco

    out, work = _paths(args, "coco")
    factory = partial(build_extractor, with_detector=True, detector=args.detector, **_factory_options(args))
    ds = prepare_coco(
        args.root,
        out,
        n_train=args.n_train,
        seed=args.seed,
        score_threshold=args.score_threshold,
        extractor_factory=factory,
        work_dir=work,
        **_common(args),
    )
    _report(ds, out)


def _run_nuswide(args) -> None:
    from hashbench.datasets.nuswide import prepare_nuswide

    out, work = _paths(args, "nuswide")
    factory = partial(build_extractor, with_detector=False, **_factory_options(args))
    ds = prepare_nuswide(
        args.root,
        out,
        queries_per_concept=args.queries_per_concept,
        n_train=args.n_train,
        seed=args.seed,
        extractor_factory=factory,
        work_dir=work,
        **_common(args),
    )
    _report(ds, out)


def _run_protocol(args) -> None:
    from hashbench.datasets.extract_models import weights_provenance
    from hashbench.datasets.standard import prepare_protocol

    out, work = _paths(args, args.protocol)
    pretrained = not args.untrained
    provenance = {}

    def factory(resize):
        extractor = build_extractor(
            with_detector=False,
            backbone=args.backbone,
            pretrained=pretrained,
            image_size=args.image_size,
            resize=resize,
            **_factory_options(args),
        )
        # after the build, so that weights it downloaded into torch's cache are hashed too
        provenance.update(weights_provenance(args.backbone, pretrained, args.weights_dir))
        return extractor

    ds = prepare_protocol(
        args.protocol,
        args.root,
        out,
        extractor_factory=factory,
        work_dir=work,
        seed=args.seed,
        query_size=args.query_size,
        train_size=args.train_size,
        image_root=getattr(args, "image_root", None),
        download=getattr(args, "download", False),
        provenance=provenance,
        **_common(args),
    )
    _report(ds, out)
    if ds.info["source_info"].get("matches_release") is False:
        print("note: the source files differ from the official release (MD5)")
    if not ds.info["standard_sizes"]:
        print(f"note: sizes differ from the protocol's {ds.info['protocol_spec']['expected']}")


def _run_import(args) -> None:
    from hashbench.datasets import load_dataset, save_dataset

    ds = load_dataset(args.source)
    save_dataset(ds, args.out)
    _report(ds, args.out)


def _report(ds, out: Path) -> None:
    sizes = ", ".join(f"{name} {len(split)}" for name, split in ds.splits().items())
    skipped = ds.info.get("skipped_images")
    note = f"; images that failed to decode and were skipped: {skipped}" if skipped and any(skipped.values()) else ""
    print(f"wrote {out}: {sizes}{note}")
