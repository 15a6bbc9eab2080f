"""`dear-ray scores import`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    scores = sub.add_parser("scores", help="score stores: import another codebase's score files")
    ssub = scores.add_subparsers(dest="scores_command", required=True, metavar="COMMAND")
    imp = ssub.add_parser("import", help="DEAR / PSL .npz files or score tables -> score stores "
                                         "(docs/importing.md)")
    imp.add_argument("files", type=Path, nargs="+", help="the files, one model each")
    imp.add_argument("--format", choices=("dear", "table"), default="dear",
                     help="dear: DEAR / PSL .npz (ind_* / ood_* keys); table: CSV or parquet with "
                          "video_id, split, label, pred, score")
    imp.add_argument("--method", required=True, help="the method name of the results table (dear, psl, ...)")
    imp.add_argument("--unknown-set", required=True, help="the unknown data set (hmdb51, mit_v2, ...)")
    imp.add_argument("--known-set", default="ucf101", help="the known data set (default ucf101)")
    imp.add_argument("--out", type=Path, required=True, help="folder of the stores (<out>/<run>/*.parquet)")
    imp.add_argument("--threshold", type=float, default=None,
                     help="the method's released threshold, as its script takes it (softmax layout: "
                          "the max-softmax confidence below which a video is rejected)")
    imp.add_argument("--layout", choices=("auto", "unctt", "softmax", "openmax"), default="auto",
                     help="which arrays of a .npz to read (default: from its keys)")
    imp.add_argument("--run", default=None, help="run name of the stores (one file; default its stem)")
    imp.add_argument("--backbone", default=None, help="recorded with the stores (e.g. tsm_r50)")
    imp.set_defaults(func=_cmd_scores_import)


def _cmd_scores_import(args: argparse.Namespace) -> int:
    from dear_ray.scores.importing import import_scores, import_summary

    written = import_scores(args.files, fmt=args.format, method=args.method, unknown_set=args.unknown_set,
                            out_dir=args.out, threshold=args.threshold, known_set=args.known_set,
                            layout=args.layout, run=args.run, backbone=args.backbone)
    print(import_summary(written))
    return 0
