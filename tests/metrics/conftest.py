"""A tiny synthetic model's score stores, written to parquet, for the report/evaluate tests."""

import numpy as np
import pytest

from dear_ray.scores import StoreMeta, compute_scores, write_score_store

K = 4


def _split(rng, labels, centres, spread, head, unknown=False):
    feats = (rng.normal(size=(labels.size, centres.shape[1])) * 4 if unknown
             else centres[labels] + rng.normal(size=(labels.size, centres.shape[1])) * spread)
    logits = feats @ centres.T / 5
    samples = logits[None] + rng.normal(size=(5, *logits.shape)) * (1.5 if unknown else 0.3)
    sample_logits = samples if head == "softmax" else None
    return feats, logits, sample_logits, compute_scores(head, logits, sample_logits=sample_logits)


@pytest.fixture
def make_stores(tmp_path):
    def make(head="softmax", run="m1", seed=0, shifted=True, method=""):
        rng = np.random.default_rng(seed)
        centres = np.eye(K, 6) * 10
        splits = {"train": np.repeat(np.arange(K), 30), "test": np.repeat(np.arange(K), 12),
                  "unknown": np.repeat([3, 8, 11], 10)}
        if shifted:
            splits["test_shifted"] = np.repeat(np.arange(K), 5)
        paths = {}
        for split, labels in splits.items():
            feats, logits, sample_logits, scores = _split(rng, labels, centres, 3.0 if split != "test_shifted"
                                                          else 6.0, head, unknown=split == "unknown")
            meta = StoreMeta(split=split, dataset="hmdb" if split == "unknown" else "synth", num_known=K,
                             head=head, checkpoint=f"{run}.pt", run=run, method=method)
            paths[split] = write_score_store(tmp_path / run / f"{split}.parquet",
                                             video_ids=[f"{split}{i}" for i in range(labels.size)], labels=labels,
                                             logits=logits, features=feats, sample_logits=sample_logits,
                                             scores=scores, meta=meta)
        return paths

    return make
