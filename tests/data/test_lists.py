"""`dear_ray.data.lists`: official split/annotation files (written here in their real formats) ->
MMAction2 lists, checked line by line against hand-written expectations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dear_ray.data.annotations import read_annotation_list, read_class_names
from dear_ray.data.lists import ListBuildError, build_lists, list_datasets
from dear_ray.registry import UnknownNameError


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write(path: Path, text: str, *, crlf: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode())
    return path


# --- UCF-101 -------------------------------------------------------------------------------


@pytest.fixture()
def ucf(tmp_path: Path) -> Path:
    root = tmp_path / "ucf101"
    ann = root / "ucfTrainTestlist"
    # the official files use CRLF line ends; HandstandPushups' videos are spelt HandStand
    write(ann / "classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n3 HandstandPushups\n", crlf=True)
    write(ann / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
          "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\n", crlf=True)
    write(ann / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\n\n"
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c02.avi\n", crlf=True)
    write(ann / "trainlist02.txt", "Archery/v_Archery_g01_c01.avi 2\n")
    write(ann / "testlist02.txt", "HandstandPushups/v_HandStandPushups_g08_c01.avi\n")
    return root


def test_ucf101_split1_lines_and_classes(ucf, tmp_path):
    out = build_lists("ucf101", root=ucf, out_dir=tmp_path / "lists")
    assert out["train"].name == "ucf101_train_split_1_videos.txt"
    assert out["test"].name == "ucf101_val_split_1_videos.txt"
    assert lines(out["train"]) == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0",
                                   "HandstandPushups/v_HandStandPushups_g08_c01.avi 2"]
    assert lines(out["test"]) == ["Archery/v_Archery_g01_c01.avi 1",
                                  "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c02.avi 0"]
    assert read_class_names(out["classes"]) == ["ApplyEyeMakeup", "Archery", "HandstandPushups"]


def test_ucf101_split2_and_relative_to(ucf, tmp_path):
    out = build_lists("ucf101", root=ucf, out_dir=tmp_path / "lists", split=2,
                      relative_to=tmp_path)
    assert out["train"].name == "ucf101_train_split_2_videos.txt"
    assert lines(out["train"]) == ["ucf101/UCF-101/Archery/v_Archery_g01_c01.avi 1"]
    assert lines(out["test"]) == ["ucf101/UCF-101/HandstandPushups/v_HandStandPushups_g08_c01.avi 2"]


def test_lists_read_back_under_a_shared_data_root(ucf, tmp_path):
    videos = ucf / "UCF-101"
    for rel in ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
                "HandstandPushups/v_HandStandPushups_g08_c01.avi"]:
        write(videos / rel, "")
    out = build_lists("ucf101", root=ucf, out_dir=tmp_path / "lists", relative_to=tmp_path)
    recs = read_annotation_list(out["train"], tmp_path, num_classes=3)
    assert [(r.path, r.label, r.video_id) for r in recs] == [
        ((videos / "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi").resolve(), 0,
         "v_ApplyEyeMakeup_g08_c01"),
        ((videos / "HandstandPushups/v_HandStandPushups_g08_c01.avi").resolve(), 2,
         "v_HandStandPushups_g08_c01")]


def test_ucf101_skip_missing_keeps_existing_videos_and_warns(ucf, tmp_path):
    write(ucf / "UCF-101/Archery/v_Archery_g01_c01.avi", "")
    with pytest.raises(ListBuildError, match="none of the 2 train videos exist under"):
        build_lists("ucf101", root=ucf, out_dir=tmp_path / "l", skip_missing=True)
    write(ucf / "UCF-101/HandstandPushups/v_HandStandPushups_g08_c01.avi", "")
    with pytest.warns(UserWarning) as caught:
        out = build_lists("ucf101", root=ucf, out_dir=tmp_path / "l", skip_missing=True)
    assert lines(out["train"]) == ["HandstandPushups/v_HandStandPushups_g08_c01.avi 2"]
    assert lines(out["test"]) == ["Archery/v_Archery_g01_c01.avi 1"]
    assert [str(w.message).split(" under ")[0] for w in caught] == [
        "ucf101_train_split_1_videos.txt: 1 of 2 train videos are missing",
        "ucf101_val_split_1_videos.txt: 1 of 2 test videos are missing"]


@pytest.mark.parametrize("name, text, message", [
    ("trainlist01.txt", "Archery/v_Archery_g01_c01.avi 1\n",
     r"trainlist01.txt:1: label 1 does not match class 'Archery' \(index 2"),
    ("trainlist01.txt", "ApplyEyeMakeup/v_a.avi 1\nArchery/v_b.avi\n",
     r"trainlist01.txt:2: expected 'Class/v_name.avi index'"),
    ("testlist01.txt", "Archery/v_a.avi\nBoxing/v_b.avi\n",
     r"testlist01.txt:2: video 'Boxing/v_b.avi' is not in a class folder listed in"),
    ("classInd.txt", "1 ApplyEyeMakeup\n3 Archery\n", r"classInd.txt:2: class index 3, expected 2"),
    ("trainlist01.txt", "ApplyEyeMakeup/v_a.avi one\n",
     r"trainlist01.txt:1: label 'one' is not a number"),
])
def test_ucf101_malformed_files_name_file_and_line(ucf, tmp_path, name, text, message):
    write(ucf / "ucfTrainTestlist" / name, text)
    with pytest.raises(ListBuildError, match=message):
        build_lists("ucf101", root=ucf, out_dir=tmp_path / "l")


def test_ucf101_missing_split_file_and_bad_split(ucf, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"trainlist03.txt does not exist"):
        build_lists("ucf101", root=ucf, out_dir=tmp_path / "l", split=3)
    with pytest.raises(ValueError, match=r"split 4; this data set has split\(s\) 1, 2, 3"):
        build_lists("ucf101", root=ucf, out_dir=tmp_path / "l", split=4)
    with pytest.raises(FileNotFoundError, match="classInd.txt not found"):
        build_lists("ucf101", root=tmp_path / "nowhere", out_dir=tmp_path / "l")


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    assert list_datasets() == ["diving48", "hmdb51", "kinetics400", "minikinetics200", "mit_v2",
                               "ucf101"]
    with pytest.raises(UnknownNameError, match="known datasets: diving48, hmdb51"):
        build_lists("ucf", root=tmp_path, out_dir=tmp_path)


# --- HMDB-51 -------------------------------------------------------------------------------


@pytest.fixture()
def hmdb(tmp_path: Path) -> Path:
    root = tmp_path / "hmdb51"
    splits = root / "testTrainMulti_7030_splits"
    # official lines end with a space; 1 = train, 2 = test, 0 = not used in this split
    write(splits / "brush_hair_test_split1.txt",
          "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nAtempting_to_comb_my_hair_u_nm_np1_fr_goo_0.avi 2 \n"
          "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 0 \n", crlf=True)
    write(splits / "cartwheel_test_split1.txt", "Bodenturnen_cartwheel_f_cm_np1_le_med_0.avi 2 \n"
          "Cartwheel_cartwheel_f_cm_np1_ri_med_0.avi 1 \n")
    write(splits / "brush_hair_test_split2.txt", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2 \n")
    write(splits / "cartwheel_test_split2.txt", "Bodenturnen_cartwheel_f_cm_np1_le_med_0.avi 1 \n")
    return root


def test_hmdb51_split1(hmdb, tmp_path):
    out = build_lists("hmdb51", root=hmdb, out_dir=tmp_path / "lists", relative_to=tmp_path)
    assert out["test"].name == "hmdb51_val_split_1_videos.txt"
    assert lines(out["train"]) == [
        "hmdb51/videos/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi 0",
        "hmdb51/videos/cartwheel/Cartwheel_cartwheel_f_cm_np1_ri_med_0.avi 1"]
    assert lines(out["test"]) == [
        "hmdb51/videos/brush_hair/Atempting_to_comb_my_hair_u_nm_np1_fr_goo_0.avi 0",
        "hmdb51/videos/cartwheel/Bodenturnen_cartwheel_f_cm_np1_le_med_0.avi 1"]
    assert read_class_names(out["classes"]) == ["brush_hair", "cartwheel"]


def test_hmdb51_split2_and_bad_flag(hmdb, tmp_path):
    out = build_lists("hmdb51", root=hmdb, out_dir=tmp_path / "l", split=2)
    assert lines(out["train"]) == ["cartwheel/Bodenturnen_cartwheel_f_cm_np1_le_med_0.avi 1"]
    assert lines(out["test"]) == ["brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi 0"]
    write(hmdb / "testTrainMulti_7030_splits/cartwheel_test_split2.txt", "a.avi 1\nb.avi 3\n")
    with pytest.raises(ListBuildError, match=r"cartwheel_test_split2.txt:2: expected "
                                             r"'video_name.avi flag' with flag 0"):
        build_lists("hmdb51", root=hmdb, out_dir=tmp_path / "l", split=2)
    with pytest.raises(FileNotFoundError, match=r"\*_test_split3.txt not found"):
        build_lists("hmdb51", root=hmdb, out_dir=tmp_path / "l", split=3)


# --- MiT-v2 --------------------------------------------------------------------------------


@pytest.fixture()
def mit(tmp_path: Path) -> Path:
    root = tmp_path / "Moments_in_Time_Raw"
    write(root / "moments_categories.txt", "adult+female+singing,1\naiming,0\napplauding,2\n")
    write(root / "trainingSet.csv", "aiming/yt-abc_1.mp4,aiming,3,0\n"
          "applauding/getty-x.mp4,applauding,2,1\n")
    write(root / "validationSet.csv", "adult+female+singing/yt-q_5.mp4,adult+female+singing,3,0\n")
    return root


def test_mit_v2(mit, tmp_path):
    out = build_lists("mit_v2", root=mit, out_dir=tmp_path / "lists")
    assert lines(out["train"]) == ["training/aiming/yt-abc_1.mp4 0",
                                   "training/applauding/getty-x.mp4 2"]
    assert lines(out["test"]) == ["validation/adult+female+singing/yt-q_5.mp4 1"]
    assert out["test"].name == "mit_val_list_videos.txt"
    assert read_class_names(out["classes"]) == ["aiming", "adult+female+singing", "applauding"]


@pytest.mark.parametrize("name, text, message", [
    ("trainingSet.csv", "aiming/a.mp4,aiming\nclapping/b.mp4,clapping\n",
     r"trainingSet.csv:2: video 'clapping/b.mp4' is not in a class folder"),
    ("trainingSet.csv", "aiming/a.mp4,applauding\n",
     r"trainingSet.csv:1: category 'applauding' differs from the video's folder 'aiming'"),
    ("moments_categories.txt", "aiming,0\napplauding,0\n",
     r"moments_categories.txt:2: category index 0 is used twice"),
    ("moments_categories.txt", "aiming,0\napplauding,2\n", r"category indices must be 0..1"),
    ("validationSet.csv", "aiming/a b.mp4,aiming\n", r"validationSet.csv:1: video path .* whitespace"),
])
def test_mit_v2_malformed(mit, tmp_path, name, text, message):
    write(mit / name, text)
    with pytest.raises(ListBuildError, match=message):
        build_lists("mit_v2", root=mit, out_dir=tmp_path / "l")


# --- Kinetics-400 and Mini-Kinetics-200 ----------------------------------------------------

K400_TRAIN = ("label,youtube_id,time_start,time_end,split,is_cc\n"
              "abseiling,---QUuC4vJs,3,13,train,0\n"
              "\"air drumming\",--nQbRBEz2s,104,114,train,0\n"
              "zumba,-0Xp_aq_k3Y,15.0,25.0,train,0\n")
K400_VAL = ("label,youtube_id,time_start,time_end,split\n"
            "air drumming,-1Wq7HDbLsM,0,10,val\n"
            "zumba,00Ztc5OE9Cg,33,43,val\n")


@pytest.fixture()
def kinetics(tmp_path: Path) -> Path:
    root = tmp_path / "kinetics400"
    write(root / "annotations/kinetics_train.csv", K400_TRAIN)
    write(root / "annotations/kinetics_val.csv", K400_VAL)
    return root


def test_kinetics400_csv(kinetics, tmp_path):
    out = build_lists("kinetics400", root=kinetics, out_dir=tmp_path / "lists")
    assert lines(out["train"]) == ["abseiling/---QUuC4vJs_000003_000013.mp4 0",
                                   "air_drumming/--nQbRBEz2s_000104_000114.mp4 1",
                                   "zumba/-0Xp_aq_k3Y_000015_000025.mp4 2"]
    assert lines(out["test"]) == ["air_drumming/-1Wq7HDbLsM_000000_000010.mp4 1",
                                  "zumba/00Ztc5OE9Cg_000033_000043.mp4 2"]
    assert read_class_names(out["classes"]) == ["abseiling", "air drumming", "zumba"]


def test_kinetics400_json_flat_layout_and_split_folders(tmp_path):
    root = tmp_path / "k"
    entry = lambda label, s, e: {"annotations": {"label": label, "segment": [s, e]},  # noqa: E731
                                 "duration": 10.0, "subset": "train", "url": "u"}
    write(root / "annotations/kinetics_train.json", json.dumps(
        {"b1": entry("zumba", 1.0, 11.0), "a2": entry("abseiling", 0.0, 10.0)}))
    write(root / "annotations/kinetics_val.json", json.dumps({"c3": entry("zumba", 5, 15)}))
    out = build_lists("kinetics400", root=root, out_dir=tmp_path / "l", class_folders=False,
                      relative_to=tmp_path)
    assert lines(out["train"]) == ["k/videos_train/b1_000001_000011.mp4 1",
                                   "k/videos_train/a2_000000_000010.mp4 0"]
    assert lines(out["test"]) == ["k/videos_val/c3_000005_000015.mp4 1"]


def test_kinetics400_val_label_not_in_train(kinetics, tmp_path):
    write(kinetics / "annotations/kinetics_val.csv", K400_VAL + "yoga,x,0,10,val\n")
    with pytest.raises(ListBuildError, match=r"kinetics_val.csv:4: label 'yoga' does not occur"):
        build_lists("kinetics400", root=kinetics, out_dir=tmp_path / "l")
    write(kinetics / "annotations/kinetics_val.csv", "label,youtube_id,start\nzumba,x,0\n")
    with pytest.raises(ListBuildError, match=r"kinetics_val.csv:1: expected a header with"):
        build_lists("kinetics400", root=kinetics, out_dir=tmp_path / "l")


def test_minikinetics200_keeps_listed_ids_and_their_classes(kinetics, tmp_path):
    write(kinetics / "annotations/train_ytid_list.txt", "---QUuC4vJs\n-0Xp_aq_k3Y\n")
    write(kinetics / "annotations/val_ytid_list.txt", "00Ztc5OE9Cg\nnot-in-k400\n")
    with pytest.warns(UserWarning, match="1 of 2 val ids are not in the Kinetics annotations"):
        out = build_lists("minikinetics200", root=kinetics, out_dir=tmp_path / "l")
    assert out["train"].name == "minikinetics200_train_list_videos.txt"
    assert read_class_names(out["classes"]) == ["abseiling", "zumba"]
    assert lines(out["train"]) == ["abseiling/---QUuC4vJs_000003_000013.mp4 0",
                                   "zumba/-0Xp_aq_k3Y_000015_000025.mp4 1"]
    assert lines(out["test"]) == ["zumba/00Ztc5OE9Cg_000033_000043.mp4 1"]


# --- Diving48 ------------------------------------------------------------------------------


@pytest.fixture()
def diving(tmp_path: Path) -> Path:
    root = tmp_path / "diving48"
    write(root / "Diving48_vocab.json", json.dumps(
        [["Back", "15som", "05Twis", "FREE"], ["Back", "15som", "15Twis", "FREE"],
         ["Forward", "25som", "NoTwis", "PIKE"]]))
    write(root / "Diving48_V2_train.json", json.dumps(
        [{"vid_name": "-mmq0PT-u8k_00155", "label": 2, "start_frame": 0, "end_frame": 48},
         {"vid_name": "_8Vy3dlHg2w_00000", "label": 0, "start_frame": 0, "end_frame": 80}]))
    write(root / "Diving48_V2_test.json", json.dumps(
        [{"vid_name": "0JDxbBbK1pU_00002", "label": 1, "start_frame": 0, "end_frame": 60}]))
    write(root / "Diving48_train.json", json.dumps(
        [{"vid_name": "v1_only", "label": 1, "start_frame": 0, "end_frame": 9}]))
    write(root / "Diving48_test.json", "[]")
    return root


def test_diving48_v2(diving, tmp_path):
    out = build_lists("diving48", root=diving, out_dir=tmp_path / "l", relative_to=tmp_path)
    assert lines(out["train"]) == ["diving48/rgb/-mmq0PT-u8k_00155.mp4 2",
                                   "diving48/rgb/_8Vy3dlHg2w_00000.mp4 0"]
    assert lines(out["test"]) == ["diving48/rgb/0JDxbBbK1pU_00002.mp4 1"]
    assert read_class_names(out["classes"]) == ["Back_15som_05Twis_FREE", "Back_15som_15Twis_FREE",
                                                "Forward_25som_NoTwis_PIKE"]


def test_diving48_v1_and_errors(diving, tmp_path):
    with pytest.raises(ListBuildError, match="the test split has no videos"):
        build_lists("diving48", root=diving, out_dir=tmp_path / "l", version="v1")
    write(diving / "Diving48_V2_test.json", json.dumps([{"vid_name": "x", "label": 3}]))
    with pytest.raises(ListBuildError, match=r"Diving48_V2_test.json: entry 0: label 3 is out of "
                                             r"range \[0, 3\)"):
        build_lists("diving48", root=diving, out_dir=tmp_path / "l")
    write(diving / "Diving48_V2_test.json", '[{"vid_name": "x",\n "label": }]')
    with pytest.raises(ListBuildError, match=r"Diving48_V2_test.json:2: not valid JSON"):
        build_lists("diving48", root=diving, out_dir=tmp_path / "l")
    with pytest.raises(ValueError, match="version 'v3'"):
        build_lists("diving48", root=diving, out_dir=tmp_path / "l", version="v3")


def test_relative_to_must_contain_the_videos(ucf, tmp_path):
    with pytest.raises(ValueError, match="is not under relative_to"):
        build_lists("ucf101", root=ucf, out_dir=tmp_path / "l", relative_to=tmp_path / "other")
