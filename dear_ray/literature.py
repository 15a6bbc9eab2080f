"""`dear-ray report LITERATURE.yaml --root DIR`: published tables reproduced from released score files.

The spec (`jobs/literature/*.yaml`, `dear_ray.metrics.literature_spec`) names each released file
relative to DIR, the method, unknown set and released threshold, and the published tables. This
module imports the files into dear_ray stores (`<out>/stores/<model>/`), evaluates them
(`dear_ray.metrics.literature`), prints and writes the tables (`literature.md`, `literature.csv`,
`cross_protocol.md`, `cross_protocol.csv`) and logs them to MLflow: a parent run named after the
spec (like a sweep's) with the tables as artifacts and the reproduction counts as metrics, and a
child run per model with its metrics under both protocols (`hmdb51/auroc`, `psl/hmdb51/auroc`,
as a sweep's trials). A file that is absent or fails its checks leaves its rows empty, with the
reason under the table; the other rows still run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dear_ray.metrics.literature import (
    cross_protocol_frame,
    evaluate_model,
    format_cross,
    format_table,
    literature_frame,
    summary,
)
from dear_ray.metrics.literature_spec import LiteratureSpec, load_literature_spec
from dear_ray.scores import read_score_store
from dear_ray.scores.importing import import_scores
from dear_ray.scores.released import ScoreImportError
from dear_ray.scores.store import ScoreStoreError


@dataclass
class LiteratureResult:
    """What the report produced: the tables (percent), their text, and where they went."""

    spec: LiteratureSpec
    frame: pd.DataFrame
    cross: pd.DataFrame | None
    text: str
    out_dir: Path
    run_id: str | None


def import_models(spec: LiteratureSpec, root: Path, stores_dir: Path) -> dict[str, tuple | str]:
    """Each model's (known, unknown) stores imported from `root`, or the reason it has none."""
    out: dict[str, tuple | str] = {}
    for name, entry in spec.models.items():
        path = root / entry.file
        if not path.is_file():
            out[name] = f"file absent: {path}"
            continue
        try:
            written = import_scores([path], method=entry.method, unknown_set=entry.unknown_set,
                                    out_dir=stores_dir, threshold=entry.threshold, known_set=spec.known_set,
                                    layout=entry.layout, run=name, backbone=spec.backbone or None,
                                    column=entry.column)
        except (ScoreImportError, ScoreStoreError) as err:
            out[name] = f"not imported: {err}"
            continue
        stores = {read_score_store(p).meta.split: read_score_store(p) for p in written}
        out[name] = (stores["test"], stores["unknown"])
    return out


def report_text(spec: LiteratureSpec, frame: pd.DataFrame, cross: pd.DataFrame | None, *,
                markdown: bool = False) -> str:
    parts = [format_table(frame[frame["table"] == i], table, markdown=markdown) for i, table in enumerate(spec.tables)]
    if cross is not None and not cross.empty:
        parts.append(format_cross(cross, markdown=markdown))
    return "\n\n".join(parts) + "\n"


def run_literature_report(spec_path: str | Path, *, root: str | Path, out_dir: str | Path | None = None,
                          run_dir: str | Path = "runs", tracking_uri: str | None = None, mlflow: bool = True,
                          num_trials: int = 10, seed: int = 0) -> LiteratureResult:
    """Import, evaluate, write and log one literature spec (module docstring).

    Args:
        spec_path: the spec YAML.
        root: where the user put the released files (the spec's paths are relative to it).
        out_dir: the report folder (default `<run_dir>/literature/<name>`).
        run_dir: the runs folder (default MLflow store `<run_dir>/mlflow.db`).
        tracking_uri: MLflow tracking URI (default: `MLFLOW_TRACKING_URI`, else the run folder's).
        mlflow: log to MLflow.
        num_trials, seed: subsets per openness point and the seed of the shared subsets.
    """
    spec = load_literature_spec(spec_path)
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--root {root}: no such folder (the released files: {spec.root_hint or 'see the spec'})")
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "literature" / spec.name
    models = import_models(spec, root, out / "stores")
    if all(isinstance(v, str) for v in models.values()):
        raise ValueError(f"{spec_path}: none of its {len(models)} files is usable under {root} (first: "
                         f"{next(iter(models.values()))})")
    options = {"num_trials": num_trials, "seed": seed}
    frame = literature_frame(spec, models, **options)
    cross = cross_protocol_frame(spec, models, **options) if spec.cross_protocol else None
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "literature.csv", index=False)
    (out / "literature.md").write_text(f"# {spec.name}\n\n{spec.description}\n\n"
                                       + report_text(spec, frame, cross, markdown=True))
    if cross is not None:
        cross.to_csv(out / "cross_protocol.csv", index=False)
        (out / "cross_protocol.md").write_text(format_cross(cross, markdown=True) + "\n")
    run_id = None
    if mlflow:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "").strip() or None
        run_id = _log_mlflow(spec, Path(spec_path), root, frame, models, out, uri, Path(run_dir), options)
    return LiteratureResult(spec, frame, cross, report_text(spec, frame, cross), out, run_id)


def _log_mlflow(spec: LiteratureSpec, spec_path: Path, root: Path, frame: pd.DataFrame, models, out: Path,
                tracking_uri: str | None, run_dir: Path, options: dict) -> str:
    """A parent run `<name>` (tables, counts) and a child run per model (its metrics under both
    protocols, named as a sweep's)."""
    from mlflow import MlflowClient

    from dear_ray.tracking.aggregate import metric_name
    from dear_ray.tracking.mlflow_runs import (
        TrialLogger,
        artifact_location_for,
        check_tracking_uri,
        default_tracking_uri,
        ensure_experiment,
        log_metric_batch,
        start_parent_run,
    )

    uri = tracking_uri or default_tracking_uri(run_dir)
    check_tracking_uri(uri)
    experiment = f"literature_{spec.name}"
    experiment_id = ensure_experiment(uri, experiment, artifact_location=artifact_location_for(uri, run_dir))
    parent = start_parent_run(uri, experiment_id, sweep=spec.name, tags={"kind": "literature"}, resume=True)
    client = MlflowClient(uri)
    client.set_tag(parent, "spec", str(spec_path))
    client.set_tag(parent, "root", str(root))
    log_metric_batch(client, parent, summary(frame))
    for name in ("literature.md", "literature.csv", "cross_protocol.md", "cross_protocol.csv"):
        if (out / name).is_file():  # the tables; the imported stores stay in the report folder
            client.log_artifact(parent, str(out / name), "report")
    for name, pair in models.items():
        if isinstance(pair, str):
            continue
        entry = spec.models[name]
        metrics = {}
        for protocol in ("dear", "psl"):
            values = evaluate_model(*pair, protocol, **options)
            metrics.update({metric_name(k, entry.unknown_set, protocol): v for k, v in values.items()})
        child = TrialLogger(uri, experiment, run_name=name, parent_run_id=parent,
                            tags={"sweep": spec.name, "trial": name, "method": entry.method,
                                  "unknown_set": entry.unknown_set, "file": entry.file,
                                  "backbone": spec.backbone})
        child.log_metrics(metrics)
        child.set_terminated("FINISHED")
    client.set_terminated(parent, "FINISHED")
    return parent


def literature_command(args) -> int:
    """`dear-ray report LITERATURE.yaml --root DIR`: print the tables; exit status 1 when a
    published number
    of a model with a file is not reproduced."""
    if args.root is None:
        raise ValueError(f"{args.sweep[0]} is a literature spec: give --root, the folder of the released "
                         "files (docs/importing.md)")
    result = run_literature_report(args.sweep[0], root=args.root, out_dir=args.out, run_dir=args.run_dir,
                                   mlflow=not args.no_mlflow)
    print(result.text, end="")
    where = f"; MLflow parent run {result.run_id}" if result.run_id else ""
    print(f"tables: {result.out_dir}{where}")
    return 0 if result.frame["reproduced"].dropna().all() else 1
