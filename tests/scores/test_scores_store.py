import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dear_ray.scores.store import ScoreStoreError, StoreMeta, read_score_store, write_score_store


def _meta(**kw):
    base = dict(split="test", dataset="synth", num_known=3, head="softmax", checkpoint="ckpt/epoch_5.pt")
    return StoreMeta(**{**base, **kw})


def _write(path, n=6, k=3, **kw):
    rng = np.random.default_rng(0)
    args = dict(video_ids=[f"v{i}" for i in range(n)], labels=np.arange(n) % k,
                logits=rng.normal(size=(n, k)).astype(np.float32), features=rng.normal(size=(n, 5)),
                sample_logits=rng.normal(size=(4, n, k)), scores={"msp": rng.random(n)}, meta=_meta(num_known=k))
    args.update(kw)
    write_score_store(path, **args)
    return args


def test_round_trip_keeps_every_field(tmp_path):
    path = tmp_path / "a" / "test.parquet"
    args = _write(path)
    store = read_score_store(path, num_known=3)
    assert store.path == path and len(store) == 6
    assert store.meta == _meta() and store.meta.method == "softmax" and store.meta.run == "ckpt/epoch_5.pt"
    assert list(store.video_ids) == args["video_ids"]
    np.testing.assert_array_equal(store.labels, args["labels"])
    np.testing.assert_array_equal(store.logits, args["logits"])
    np.testing.assert_array_equal(store.preds, args["logits"].argmax(1))
    np.testing.assert_array_equal(store.features, args["features"].astype(np.float32))
    np.testing.assert_array_equal(store.sample_logits, args["sample_logits"].astype(np.float32))
    np.testing.assert_array_equal(store.score("msp"), args["scores"]["msp"])
    schema = pq.read_schema(path)
    assert pa.types.is_fixed_size_list(schema.field("logits").type)
    meta = json.loads(schema.metadata[b"dear_ray"])
    assert meta["head"] == "softmax" and meta["method"] == "softmax" and meta["num_known"] == 3


def test_optional_columns_and_unknown_split_labels(tmp_path):
    path = tmp_path / "u.parquet"
    _write(path, features=None, sample_logits=None, labels=np.array([7, 9, 7, 40, 9, 9]),
           meta=_meta(split="unknown", dataset="hmdb", method="dear", run="trial_0"))
    store = read_score_store(path)
    assert store.features is None and store.sample_logits is None
    assert store.meta.method == "dear" and store.meta.run == "trial_0"
    np.testing.assert_array_equal(store.labels, [7, 9, 7, 40, 9, 9])


def test_variable_list_columns_are_accepted(tmp_path):
    path = tmp_path / "l.parquet"
    logits = np.arange(6, dtype=np.float32).reshape(2, 3)
    table = pa.table({"video_id": ["a", "b"], "label": [0, 2], "pred": [2, 2],
                      "logits": pa.array(logits.tolist(), pa.list_(pa.float32())), "score.msp": [0.1, 0.2]})
    pq.write_table(table.replace_schema_metadata({b"dear_ray": _meta().to_json()}), path)
    np.testing.assert_array_equal(read_score_store(path).logits, logits)


def test_wrong_num_known_names_file_and_counts(tmp_path):
    path = tmp_path / "s.parquet"
    _write(path)
    with pytest.raises(ScoreStoreError, match=rf"{path}: store has num_known=3 .*expected num_known=5"):
        read_score_store(path, num_known=5)


def _raw(path, columns, meta=None):
    table = pa.table(columns)
    if meta is not False:
        table = table.replace_schema_metadata({b"dear_ray": (meta or _meta()).to_json()})
    pq.write_table(table, path)


def _columns(**over):
    cols = {"video_id": ["a", "b"], "label": [0, 1], "pred": [0, 1],
            "logits": pa.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], pa.list_(pa.float32(), 3))}
    cols.update(over)
    return {k: v for k, v in cols.items() if v is not None}


@pytest.mark.parametrize("over, msg", [
    ({"logits": None}, "missing column"),
    ({"logits": pa.array([[np.nan, 0.0, 0.0], [0.0, 1.0, 0.0]], pa.list_(pa.float32(), 3))}, "NaN"),
    ({"label": [0.0, 1.0]}, "'label' has type double, expected integer"),
    ({"label": [0, 3]}, r"label 3 outside \[0, 3\)"),
    ({"logits": pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32(), 2))}, "2 values a row, expected 3"),
    ({"logits": pa.array(["x", "y"])}, "expected a list of floats"),
    ({"score.msp": [0.1, float("nan")]}, "score 'msp' has 1 NaN"),
    ({"score.msp": ["a", "b"]}, "'score.msp' has type string, expected float"),
    ({"pred": [1, 1]}, "'pred' is not the argmax"),
])
def test_bad_files_raise_naming_file_and_problem(tmp_path, over, msg):
    path = tmp_path / "bad.parquet"
    _raw(path, _columns(**over))
    with pytest.raises(ScoreStoreError, match=msg) as info:
        read_score_store(path)
    assert str(path) in str(info.value)


def test_not_a_store(tmp_path):
    path = tmp_path / "plain.parquet"
    _raw(path, _columns(), meta=False)
    with pytest.raises(ScoreStoreError, match="not a dear_ray score store"):
        read_score_store(path)
    with pytest.raises(ScoreStoreError, match="no such score store file"):
        read_score_store(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_text("nope")
    with pytest.raises(ScoreStoreError, match="not a readable parquet file"):
        read_score_store(tmp_path / "junk.parquet")


@pytest.mark.parametrize("over, msg", [
    ({"logits": np.zeros((6, 4))}, r"logits must be \(N=6, num_known=3\)"),
    ({"logits": np.full((6, 3), np.nan)}, "logits contain 18 NaN"),
    ({"labels": np.array([0, 1, 2, 3, 0, 1])}, r"label 3 outside \[0, 3\)"),
    ({"labels": np.zeros(5, int)}, r"labels must be \(6,\) integers"),
    ({"scores": {"msp": np.array([0.1] * 5 + [np.nan])}}, "score 'msp' has 1 NaN"),
    ({"scores": {"msp": np.zeros(4)}}, r"score 'msp' has shape \(4,\), expected \(6,\)"),
    ({"sample_logits": np.zeros((2, 6, 4))}, r"sample_logits must be \(S, N=6, K=3\)"),
])
def test_bad_writes_raise(tmp_path, over, msg):
    with pytest.raises(ScoreStoreError, match=msg):
        _write(tmp_path / "w.parquet", **over)


def test_bad_meta_fields():
    with pytest.raises(ScoreStoreError, match="split='holdout'"):
        _meta(split="holdout")
    with pytest.raises(ScoreStoreError, match="num_known=0"):
        _meta(num_known=0)


def test_with_scores_checks_values(tmp_path):
    path = tmp_path / "s.parquet"
    _write(path)
    store = read_score_store(path)
    assert set(store.with_scores({"x": np.ones(6)}).scores) == {"msp", "x"}
    with pytest.raises(ScoreStoreError, match="score 'x' has 1 NaN"):
        store.with_scores({"x": np.array([1, 1, 1, 1, 1, np.nan])})
    with pytest.raises(KeyError, match="stored scores: msp"):
        store.score("energy")
