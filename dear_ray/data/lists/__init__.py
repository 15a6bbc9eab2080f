"""MMAction2-format annotation lists for the real data sets, built from their official files.

    build_lists("ucf101", root="/data/ucf101", out_dir="/data/lists", split=1,
                relative_to="/data")
    # {'train': .../ucf101_train_split_1_videos.txt, 'test': .../ucf101_val_split_1_videos.txt,
    #  'classes': .../ucf101_classes.txt}

Every builder writes a train list, a test list (named `val` as in MMAction2 and DEAR, which evaluate
on the official test split) and a class-name file (line i = label i), and returns their paths under
the keys `train`, `test` and `classes`. A list line is `relative/path.ext label` (0-based label);
the path is relative to `relative_to` (default: the data set's video folder), so several data sets
under one folder can share one `data.data_root`. Videos need not exist when the lists are built;
`skip_missing=True` leaves out the ones that do not (a warning counts them).

Official files read (the first existing candidate under `root` is used; the error lists them all):
- UCF-101: `ucfTrainTestlist/classInd.txt` (`1 ApplyEyeMakeup`), `trainlist0{1,2,3}.txt`
  (`Class/v_x.avi 1`, 1-based label), `testlist0{1,2,3}.txt` (`Class/v_x.avi`); videos `UCF-101/`.
  The label comes from the class folder and is checked against the train list's label.
- HMDB-51: `testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt` (`name.avi 1`: 1 = train,
  2 = test, 0 = unused); classes sorted by name; videos `videos/<class>/<name>.avi`.
- MiT-v2: `moments_categories.txt` (`name,index`), `trainingSet.csv` / `validationSet.csv`
  (`category/file.mp4,category,...`); videos `training/` and `validation/`.
- Kinetics-400: `annotations/kinetics_{train,val}.csv` (header `label,youtube_id,time_start,
  time_end,split[,is_cc]`) or the official JSON (`{youtube_id: {"annotations": {"label", "segment"},
  ...}}`); videos `videos_{train,val}/<label with '_' for ' '>/<id>_<start:06d>_<end:06d>.mp4`;
  classes sorted by name (MMAction2).
- Mini-Kinetics-200 (Xie et al. 2018): the Kinetics-400 files plus `train_ytid_list.txt` /
  `val_ytid_list.txt` (one YouTube id a line); classes: the sorted labels of the listed videos.
- Diving48: `Diving48_V2_{train,test}.json` (v2) or `Diving48_{train,test}.json` (v1, used by SDN):
  `[{"vid_name", "label", "start_frame", "end_frame"}, ...]`; `Diving48_vocab.json` (48 lists of
  4 sub-action words, class name = the words joined by `_`); videos `rgb/<vid_name>.mp4`.
"""

from __future__ import annotations

from pathlib import Path

from dear_ray.data.lists import diving48, kinetics, ucf_hmdb_mit  # noqa: F401  (register builders)
from dear_ray.data.lists._common import DATASETS, ListBuildError, PathLike


def build_lists(dataset: str, *, root: PathLike, out_dir: PathLike, split: int = 1,
                **options) -> dict[str, Path]:
    """Build the annotation lists of one data set from its official files.

    Args:
        dataset: `ucf101`, `hmdb51`, `mit_v2`, `kinetics400`, `minikinetics200` or `diving48`.
        root: the data set's folder (official annotation files and videos).
        out_dir: where the lists and the class-name file are written (created if needed).
        split: official split 1, 2 or 3 (UCF-101, HMDB-51); the others have only split 1.
        **options: the builder's keyword options (`videos_dir`, `relative_to`, `skip_missing`, ...).

    Returns:
        `{"train": Path, "test": Path, "classes": Path}`.

    Raises:
        UnknownNameError: unknown data set (the message lists the known ones).
        FileNotFoundError: an official file is missing (the message lists where it was looked for).
        ListBuildError: a malformed file, naming the file and the line.
    """
    builder = DATASETS.get(dataset)
    return builder(root, out_dir, split=split, **options)


def list_datasets() -> list[str]:
    """The data set names `build_lists` accepts."""
    return DATASETS.names()


__all__ = ["DATASETS", "ListBuildError", "build_lists", "list_datasets"]
