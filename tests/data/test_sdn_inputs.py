import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dear_ray.data.sdn_inputs import (
    hard_scene_label,
    load_detections,
    load_scene_labels,
    mask_eligible,
    mask_humans,
)


def save_pickle(path, obj):
    np.save(path, obj, allow_pickle=True)
    return path


def test_scene_labels_npy_averages_per_frame_probs(tmp_path):
    path = save_pickle(
        tmp_path / "scene.npy",
        {
            "walk": {"v1": {"pred_cls": 1, "probs": [0.1, 0.9, 0.0]}},
            "run": {"v2": {"pred_cls": [1, 0], "probs": [[0.2, 0.8, 0.0], [0.4, 0.4, 0.2]]}},
        },
    )
    scene = load_scene_labels(path)
    assert set(scene) == {"v1", "v2"}
    np.testing.assert_allclose(scene["v1"], [0.1, 0.9, 0.0])
    np.testing.assert_allclose(scene["v2"], [0.3, 0.6, 0.1], rtol=1e-6)
    assert scene["v2"].dtype == np.float32


def scene_table(ids, probs):
    return pa.table(
        {
            "video_id": pa.array(ids, pa.string()),
            "class_name": pa.array(["walk"] * len(ids), pa.string()),
            "pred_cls": pa.array([int(np.argmax(p)) for p in probs], pa.int64()),
            "probs": pa.array(probs, pa.list_(pa.float32())),
        }
    )


def test_scene_labels_parquet(tmp_path):
    path = tmp_path / "scene.parquet"
    pq.write_table(scene_table(["a", "b"], [[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]), path)
    scene = load_scene_labels(path)
    np.testing.assert_array_equal(scene["a"], np.float32([0.5, 0.25, 0.25]))
    np.testing.assert_array_equal(scene["b"], np.float32([0, 0, 1]))


def test_scene_label_errors(tmp_path):
    path = tmp_path / "dup.parquet"
    pq.write_table(scene_table(["a", "a"], [[1.0, 0.0], [0.0, 1.0]]), path)
    with pytest.raises(ValueError, match=r"dup.parquet row 1: video 'a' has scene labels twice"):
        load_scene_labels(path)
    pq.write_table(scene_table(["a", "b"], [[1.0, 0.0], [0.0, 0.5, 0.5]]), path)
    with pytest.raises(ValueError, match=r"row 1: 3 scene classes, other videos have 2"):
        load_scene_labels(path)
    pq.write_table(pa.table({"video_id": ["a"]}), path)
    with pytest.raises(ValueError, match=r"missing columns \['class_name', 'pred_cls', 'probs'\]"):
        load_scene_labels(path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="unsupported suffix '.json'"):
        load_scene_labels(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_scene_labels(tmp_path / "nope.npy")


def test_detections_npy_and_parquet_agree(tmp_path):
    boxes = {
        "walk": {
            "v1": {
                1: {"human_boxes": [[1, 2, 3, 4, 0.9], [5, 6, 7, 8, 0.2]]},
                3: {"human_boxes": np.zeros((0, 5))},
            },
        },
        "run": {"v2": {2: {"human_boxes": [[0, 0, 10, 10, 0.5]]}}},
    }
    det_npy = load_detections(save_pickle(tmp_path / "det.npy", boxes))
    rows = [("v1", "walk", 1, 1, 2, 3, 4, 0.9), ("v1", "walk", 1, 5, 6, 7, 8, 0.2), ("v2", "run", 2, 0, 0, 10, 10, 0.5)]
    cols = list(zip(*rows))
    table = pa.table(
        {
            "video_id": pa.array(cols[0], pa.string()),
            "class_name": pa.array(cols[1], pa.string()),
            "frame": pa.array(cols[2], pa.int64()),
            **{n: pa.array(c, pa.float32()) for n, c in zip(["x1", "y1", "x2", "y2", "score"], cols[3:])},
        }
    )
    pq.write_table(table, tmp_path / "det.parquet")
    det_pq = load_detections(tmp_path / "det.parquet")
    expected_v1 = np.float32([[1, 2, 3, 4, 0.9], [5, 6, 7, 8, 0.2]])
    for det in (det_npy, det_pq):
        np.testing.assert_array_equal(det["v1"][1], expected_v1)
        np.testing.assert_array_equal(det["v2"][2], np.float32([[0, 0, 10, 10, 0.5]]))
    assert det_npy["v1"][3].shape == (0, 5) and 3 not in det_pq["v1"]


def test_detection_errors(tmp_path):
    path = save_pickle(tmp_path / "d.npy", {"c": {"v": {0: {"human_boxes": [[0, 0, 1, 1, 1]]}}}})
    with pytest.raises(ValueError, match="frame numbers are 1-based, got 0"):
        load_detections(path)
    path = save_pickle(tmp_path / "d.npy", {"c": {"v": {1: {"human_boxes": [[0, 0, 1, 1]]}}}})
    with pytest.raises(ValueError, match=r"'human_boxes' must be \(N, 5\), got \(1, 4\)"):
        load_detections(path)


def test_mask_humans_fills_boxes_with_the_frame_mean():
    frames = np.zeros((2, 6, 8, 3), np.uint8)
    frames[:, 3:, :, 0] = 100  # mean red 50
    frames[..., 1], frames[..., 2] = 30, 61
    boxes = {
        4: np.float32([[1.5, 1, 4, 3, 0.9], [6, 0, 8, 6, 0.29]]),  # second box below the threshold
    }
    out = mask_humans(frames, np.array([3, 5]), boxes)  # decoder frame 3 = detection frame 4
    expected = frames.copy()
    expected[0, 1:3, 1:4] = [50, 30, 61]
    np.testing.assert_array_equal(out, expected)
    assert frames[0, 1, 1, 0] == 0  # input untouched


def test_hard_scene_label_is_the_mode_of_the_per_frame_classes(tmp_path):
    # SDN Kinetics_adv: np.bincount(pred_cls).argmax(), ties to the smallest class; the argmax
    # of the mean probabilities (what a soft label's argmax gives) can be another class
    probs = [[0.1, 0.0, 0.9], [0.6, 0.4, 0.0], [0.6, 0.4, 0.0]]  # mean (0.43, 0.27, 0.3)
    path = save_pickle(tmp_path / "scene.npy", {
        "walk": {"a": {"pred_cls": np.array([2, 2, 0]), "probs": probs},
                 "b": {"pred_cls": np.array([1, 3, 3, 1]), "probs": [[0.5, 0.25, 0.25]] * 4},
                 "c": {"pred_cls": 4, "probs": [0.2, 0.3, 0.5]}},
    })
    hard = load_scene_labels(path, "hard")
    assert {k: int(v) for k, v in hard.items()} == {"a": 2, "b": 1, "c": 4}
    assert hard["a"].dtype == np.int64
    assert int(np.argmax(load_scene_labels(path)["a"])) == 0
    assert hard_scene_label([0, 5, 5]) == 5
    with pytest.raises(ValueError, match="'pred_cls' must be a class index"):
        hard_scene_label(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="kind must be 'soft' or 'hard', got 'mode'"):
        load_scene_labels(path, "mode")
    pq.write_table(scene_table(["a"], [[0.2, 0.8]]), tmp_path / "s.parquet")
    assert int(load_scene_labels(tmp_path / "s.parquet", "hard")["a"]) == 1


def test_mask_eligibility_by_hand():
    # SDN datasets/kinetics.py is_video_valid_det: a frame counts when one of its boxes scores
    # STRICTLY above 0.3; eligible when counted / n_frames >= 0.7 (n_frames: the video's length)
    person, weak, exact = [0, 0, 5, 5, 0.9], [0, 0, 5, 5, 0.2], [0, 0, 5, 5, 0.3]
    boxes = {f: np.float32([person]) for f in range(1, 8)}  # 7 of 10 frames
    assert mask_eligible(boxes, 10)                          # 0.7 >= 0.7
    assert not mask_eligible(boxes, 11)                      # 7/11 < 0.7: frames without an entry
    boxes[7] = np.float32([exact, weak])                     # 0.3 is not above 0.3
    assert not mask_eligible(boxes, 10)
    boxes[8] = np.float32([weak, person])                    # one good box is enough
    assert mask_eligible(boxes, 10)
    boxes[9] = np.zeros((0, 5), np.float32)
    assert mask_eligible(boxes, 10) and not mask_eligible(boxes, 10, min_human_fraction=0.8)
    assert mask_eligible(boxes, 10, min_box_score=0.25, min_human_fraction=0.8)  # 0.3 > 0.25
