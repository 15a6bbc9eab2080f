"""The names of the splits a trial is evaluated on, one definition for the config, the generator
and the score stores (docs/metrics.md)."""

# the static-bias splits (StillMix's SCUBA / SCUFO; `DataConfig.static_bias`): known classes too
STATIC_BIAS_SPLITS: tuple[str, ...] = ("test_scuba", "test_scufo")
# splits of the known classes: `train` sets the threshold, `test` is the known test set
KNOWN_SPLITS: tuple[str, ...] = ("train", "val", "test", "test_shifted", *STATIC_BIAS_SPLITS)
# the split name of every unknown set's score store (its data set name tells the sets apart)
UNKNOWN_SPLIT = "unknown"
# held-out unknown videos on which the report chooses the post-hoc detectors' hyper-parameters
# (`DataConfig.val_unknown`): never a test set, never a report row
VAL_UNKNOWN_SPLIT = "val_unknown"
