import pytest
import torch
from torch import nn

from dear_ray.models.backbones import create_backbone
from dear_ray.models.checkpoint import CheckpointError, LoadReport, load_checkpoint

# 2 shared cores: intra-op threads oversubscribe under load (10x slower tiny steps measured)
torch.set_num_threads(1)


class _Head(nn.Module):
    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc_cls = nn.Linear(in_features, num_classes)


class _Recognizer(nn.Module):
    """Stand-in with the Recognizer's key layout (`backbone.*`, `cls_head.fc_cls.*`)."""

    def __init__(self, backbone: str, num_classes: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = create_backbone(backbone)
        self.cls_head = _Head(self.backbone.num_features, num_classes)
        with torch.no_grad():  # BN buffers and zero-init BNs would otherwise match by accident
            for t in self.state_dict().values():
                if t.is_floating_point():
                    t.copy_(torch.randn_like(t))


def _assert_same(a: nn.Module, b: nn.Module, *, skip: str = "\0") -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if skip not in k:
            assert torch.equal(sa[k], sb[k]), k


def test_mmaction2_style_checkpoint_round_trip_into_recognizer_and_bare_backbone(tmp_path):
    src = _Recognizer("tsm_tiny", 400, seed=0)
    path = tmp_path / "mm.pth"
    # MMAction2 layout: {'meta': ..., 'state_dict': {...}}, DataParallel's 'module.' prefix
    torch.save({"meta": {"epoch": 3}, "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = _Recognizer("tsm_tiny", 400, seed=1)
    report = load_checkpoint(dst, path)
    _assert_same(src, dst)
    assert report.missing == [] and report.unexpected == [] and report.skipped_classifier == []
    assert len(report.loaded) == len(src.state_dict())
    assert "layer1.0.conv1.conv.net.weight" in "".join(report.loaded)

    bare = create_backbone("tsm_tiny")
    report = load_checkpoint(bare, path)  # 'backbone.' is stripped, the head is unexpected
    _assert_same(src.backbone, bare)
    assert sorted(report.unexpected) == ["cls_head.fc_cls.bias", "cls_head.fc_cls.weight"]
    assert report.missing == []


def test_bare_backbone_state_dict_loads_into_recognizer(tmp_path):
    src = create_backbone("slowfast_tiny")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    path = tmp_path / "bare.pth"
    torch.save(src.state_dict(), path)  # keys without 'backbone.' (slow_path.layer1_lateral...)
    dst = _Recognizer("slowfast_tiny", 7, seed=2)
    head_before = dst.cls_head.fc_cls.weight.clone()
    report = load_checkpoint(dst, path)
    _assert_same(src, dst.backbone)
    assert sorted(report.missing) == ["cls_head.fc_cls.bias", "cls_head.fc_cls.weight"]
    assert torch.equal(dst.cls_head.fc_cls.weight, head_before)
    assert "missing in checkpoint (2): cls_head.fc_cls.weight, cls_head.fc_cls.bias" in report.summary()


def test_classifier_of_other_width_is_skipped_unless_strict(tmp_path):
    src = _Recognizer("i3d_tiny", 400, seed=0)  # a "Kinetics-400" checkpoint
    path = tmp_path / "k400.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    dst = _Recognizer("i3d_tiny", 101, seed=1)
    head_before = dst.cls_head.fc_cls.weight.clone()
    report = load_checkpoint(dst, path)
    assert isinstance(report, LoadReport)
    assert sorted(report.skipped_classifier) == ["cls_head.fc_cls.bias", "cls_head.fc_cls.weight"]
    assert report.missing == [] and report.unexpected == []
    _assert_same(src.backbone, dst.backbone)
    assert torch.equal(dst.cls_head.fc_cls.weight, head_before)
    assert "skipped classifier (400 classes in the checkpoint, 101 in the model)" in str(report)
    with pytest.raises(CheckpointError, match=r"cls_head.fc_cls.weight: checkpoint \(400, 256\), model \(101, 256\)"):
        load_checkpoint(_Recognizer("i3d_tiny", 101, seed=1), path, strict_classifier=True)


def test_mismatched_conv_raises_and_names_the_key(tmp_path):
    state = create_backbone("i3d_tiny").state_dict()
    state["layer3.0.conv1.conv.weight"] = torch.zeros(32, 64, 1, 1, 1)  # (32, 64, 3, 1, 1) in the model
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    dst = create_backbone("i3d_tiny")
    before = dst.conv1.conv.weight.clone()
    expected = r"bad.pth.*\n.*layer3.0.conv1.conv.weight.*\(32, 64, 1, 1, 1\).*\(32, 64, 3, 1, 1\)"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(dst, path)
    assert torch.equal(dst.conv1.conv.weight, before)  # nothing was loaded


def test_missing_and_unexpected_are_reported(tmp_path):
    state = create_backbone("r3d18_tiny").state_dict()
    del state["layer4.0.bn2.running_mean"]
    state["fc.weight"] = torch.zeros(400, 64)  # SDN's classifier name has no place in the backbone
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    report = load_checkpoint(create_backbone("r3d18_tiny"), path)
    assert report.missing == ["layer4.0.bn2.running_mean"]
    assert report.unexpected == ["fc.weight"]
    assert "unexpected in checkpoint (1): fc.weight" in report.summary()


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(create_backbone("r3d18_tiny"), tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_checkpoint(create_backbone("r3d18_tiny"), tmp_path / "junk.pth")
    torch.save({"state_dict": {"conv1.weight": [1, 2]}}, tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list.pth: state dict entries that are not tensors: \['conv1.weight'\]"):
        load_checkpoint(create_backbone("r3d18_tiny"), tmp_path / "list.pth")
    torch.save({"state_dict": nn.Linear(2, 2)}, tmp_path / "pickled.pth")  # a pickled module object
    with pytest.raises(CheckpointError, match=r"pickled.pth: cannot be read with torch.load\(weights_only=True\)"):
        load_checkpoint(create_backbone("r3d18_tiny"), tmp_path / "pickled.pth")


def test_mmaction2_tpn_layout_with_top_level_neck(tmp_path):
    # MMAction2's TPN checkpoints keep the neck beside the backbone: backbone.layer1..., neck.*
    src = _Recognizer("tpn_tiny", 400, seed=0)
    state = {}
    for k, v in src.state_dict().items():
        state[k.replace("backbone.neck.", "neck.")] = v
    assert any(k.startswith("neck.pyramid_fusion.") for k in state)
    path = tmp_path / "tpn.pth"
    torch.save({"state_dict": state}, path)
    dst = _Recognizer("tpn_tiny", 400, seed=1)
    report = load_checkpoint(dst, path)
    _assert_same(src, dst)
    assert report.missing == [] and report.unexpected == []


def _released_dear_state(model: nn.Module, rename: dict[str, str]) -> dict[str, torch.Tensor]:
    """`model`'s weights (randomised) under the released DEAR names: `rename` maps our prefixes."""
    state = {}
    for key, value in model.state_dict().items():
        tensor = torch.randn_like(value) if value.is_floating_point() else value.clone()
        for ours, theirs in rename.items():
            if key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        state[key] = tensor
    return state


@pytest.mark.parametrize("head, rename", [
    ("dear", {"cls_head.debias_head.": "debias_head."}),
    ("bnn", {"cls_head.fc_cls.": "cls_head.bnn_cls.bnn_layer."}),
    # DEAR's RPL heads: points = the weight of a bias-free Linear (K, F); radius = the RPLoss
    # module's parameter, shape (1,)
    ("rpl", {"cls_head.points": "cls_head.fc_centers.weight",
             "cls_head.radius": "cls_head.loss_cls.radius"}),
])
def test_released_dear_key_names_load_into_our_modules(tmp_path, head, rename):
    from dear_ray.models import build_recognizer

    options = {"temporal_kernel": 1} if head == "dear" else {}
    model = build_recognizer(backbone="i3d_tiny", head=head, num_classes=5, head_options=options)
    released = _released_dear_state(model, rename)
    if head == "rpl":
        assert model.state_dict()["cls_head.radius"].shape == ()
        released["cls_head.loss_cls.radius"] = torch.tensor([0.75])  # torch.Tensor(1) in DEAR
        assert released["cls_head.fc_centers.weight"].shape == (5, model.cls_head.points.shape[1])
    assert all(not k.startswith(tuple(rename)) for k in released)  # really renamed
    torch.save({"state_dict": {f"module.{k}": v for k, v in released.items()}}, tmp_path / "d.pth")
    report = load_checkpoint(model, tmp_path / "d.pth")
    assert report.unexpected == [] and report.skipped_classifier == [] and report.missing == []
    ours = model.state_dict()
    for theirs, tensor in released.items():
        key = next((o + theirs[len(t):] for o, t in rename.items() if theirs.startswith(t)), theirs)
        assert torch.equal(ours[key].reshape(tensor.shape), tensor), key
    if head == "rpl":
        assert model.cls_head.radius.item() == 0.75


def test_released_dear_names_with_wrong_shapes_raise_naming_the_key(tmp_path):
    from dear_ray.models import build_recognizer

    model = build_recognizer(backbone="i3d_tiny", head="dear", num_classes=5,
                             head_options={"temporal_kernel": 1})
    released = _released_dear_state(model, {"cls_head.debias_head.": "debias_head."})
    released["debias_head.f2_conv3d.conv.weight"] = torch.zeros(3, 3, 1, 1, 1)
    torch.save({"state_dict": released}, tmp_path / "bad_dear.pth")
    before = model.state_dict()["cls_head.debias_head.f1_fc.weight"].clone()
    with pytest.raises(CheckpointError, match=r"bad_dear.pth: shape mismatch for 1 tensor.*\n.*"
                       r"debias_head.f2_conv3d.conv.weight -> cls_head.debias_head.f2_conv3d.conv"
                       r".weight: checkpoint \(3, 3, 1, 1, 1\)"):
        load_checkpoint(model, tmp_path / "bad_dear.pth")
    assert torch.equal(model.state_dict()["cls_head.debias_head.f1_fc.weight"], before)
    # a radius that is not one number is not reshaped
    rpl = build_recognizer(backbone="i3d_tiny", head="rpl", num_classes=5)
    torch.save({"cls_head.loss_cls.radius": torch.zeros(2)}, tmp_path / "radius.pth")
    with pytest.raises(CheckpointError, match=r"cls_head.loss_cls.radius -> cls_head.radius: "
                                              r"checkpoint \(2,\), model \(\)"):
        load_checkpoint(rpl, tmp_path / "radius.pth")


def test_released_tpn_aux_head_and_neck_load(tmp_path):
    from dear_ray.models import build_recognizer

    model = build_recognizer(backbone="tpn_slowonly_r50", head="softmax", num_classes=4)
    # DEAR's TPN recognizer keeps the neck (and its auxiliary head) beside the backbone
    released = _released_dear_state(model, {"aux_head.": "neck.aux_head.",
                                            "backbone.neck.": "neck."})
    torch.save(released, tmp_path / "tpn.pth")
    report = load_checkpoint(model, tmp_path / "tpn.pth")
    assert report.unexpected == [] and report.missing == []
    assert torch.equal(model.state_dict()["aux_head.fc.weight"], released["neck.aux_head.fc.weight"])
    neck_key = next(k for k in released if k.startswith("neck.") and "aux_head" not in k)
    assert torch.equal(model.state_dict()[f"backbone.{neck_key}"], released[neck_key])

    # a debias head of another width is a classifier: skipped, not an error
    dear = build_recognizer(backbone="i3d_tiny", head="dear", num_classes=3,
                            head_options={"temporal_kernel": 1})
    other = build_recognizer(backbone="i3d_tiny", head="dear", num_classes=7,
                             head_options={"temporal_kernel": 1})
    torch.save(_released_dear_state(other, {"cls_head.debias_head.": "debias_head."}),
               tmp_path / "d7.pth")
    skipped = load_checkpoint(dear, tmp_path / "d7.pth").skipped_classifier
    assert sorted(skipped) == sorted(k for k in dear.state_dict()
                                     if "fc_cls" in k or "_fc." in k)


def test_our_training_checkpoint_loads_directly_and_exports(tmp_path):
    from dear_ray.models import build_recognizer, export_weights
    from dear_ray.train.checkpointing import save_checkpoint

    trained = build_recognizer(backbone="i3d_tiny", head="sdn",
                               num_classes=6, head_options={"num_places": 4})
    with torch.no_grad():
        for t in trained.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t))
    folder = save_checkpoint(tmp_path / "checkpoint_epoch_0003", model=trained, epoch=3,
                             global_step=40)
    fine = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=2)
    report = load_checkpoint(fine, folder)  # the folder, as model.pretrained names it
    assert sorted(report.skipped_classifier) == ["cls_head.fc_cls.bias", "cls_head.fc_cls.weight"]
    assert report.missing == [] and all(k.startswith("cls_head.") for k in report.unexpected)
    _assert_same(fine.backbone, trained.backbone)

    out = export_weights(folder, tmp_path / "export" / "sdn.pth")
    saved = torch.load(out, weights_only=True)
    assert saved["meta"]["epoch"] == 3 and saved["state_dict"].keys() == trained.state_dict().keys()
    again = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=2)
    load_checkpoint(again, out)
    _assert_same(again.backbone, trained.backbone)

    with pytest.raises(CheckpointError, match="not a dear_ray training checkpoint"):
        export_weights(out, tmp_path / "x.pth")
    with pytest.raises(FileNotFoundError, match="has no state.pt"):
        load_checkpoint(fine, tmp_path / "export")


# --------------------------------------------------------------------------------------------
# exact fit for evaluation (eval_only) and the meta-device check


def _random(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t))
    return model


def test_check_on_a_meta_model_names_missing_and_unexpected_keys_for_evaluation(tmp_path):
    from dear_ray.models import build_recognizer
    from dear_ray.models.checkpoint import check_checkpoint, to_mmaction2_layout

    def meta(head, **kw):
        with torch.device("meta"):
            return build_recognizer(backbone="i3d_tiny", head=head, num_classes=3, **kw)

    dear_opts = {"head_options": {"temporal_kernel": 1}}
    edl = _random(build_recognizer(backbone="i3d_tiny", head="edl", num_classes=3))
    dear = _random(build_recognizer(backbone="i3d_tiny", head="dear", num_classes=3, **dear_opts))
    torch.save({"state_dict": edl.state_dict()}, tmp_path / "edl.pth")
    torch.save({"meta": {"epoch": 50}, "state_dict": to_mmaction2_layout(dear.state_dict()),
                "optimizer": torch.optim.SGD(dear.parameters(), lr=0.1, momentum=0.9).state_dict()},
               tmp_path / "dear.pth")  # mmcv's save_checkpoint layout, DEAR's key names

    # exact fits pass, also with the optimizer state in the file
    assert check_checkpoint(meta("edl"), tmp_path / "edl.pth", complete=True).missing == []
    report = check_checkpoint(meta("dear", **dear_opts), tmp_path / "dear.pth", complete=True)
    assert report.unexpected == [] and len(report.loaded) == len(dear.state_dict())
    # an EDL checkpoint for a DEAR model: the debias head is missing
    with pytest.raises(CheckpointError, match=r"edl.pth: does not fit model X: evaluating it needs "
                       r"every tensor of the model\n  missing in checkpoint \(\d+\): "
                       r"cls_head.debias_head\."):
        check_checkpoint(meta("dear", **dear_opts), tmp_path / "edl.pth", complete=True,
                         what="model X")
    # a DEAR checkpoint for an EDL model: its debias head is unexpected (under DEAR's name)
    with pytest.raises(CheckpointError, match=r"unexpected in checkpoint \(\d+\): debias_head\."):
        check_checkpoint(meta("edl"), tmp_path / "dear.pth", complete=True)
    # fine-tuning (not complete) accepts both: missing tensors keep their initial values
    assert check_checkpoint(meta("dear", **dear_opts), tmp_path / "edl.pth").missing
    # a classifier of another width is an error for evaluation, naming both shapes
    with torch.device("meta"):
        five = build_recognizer(backbone="i3d_tiny", head="edl", num_classes=5)
    with pytest.raises(CheckpointError, match=r"cls_head.fc_cls.weight -> cls_head.fc_cls.weight: "
                                              r"checkpoint \(3, \d+\), model \(5, \d+\)"):
        check_checkpoint(five, tmp_path / "edl.pth", complete=True)


def test_complete_load_tolerates_only_missing_batch_counters_and_loads_nothing_on_failure(tmp_path):
    from dear_ray.models import build_recognizer

    src = _random(build_recognizer(backbone="i3d_tiny", head="rpl", num_classes=3))
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "no_counters.pth")  # old torch checkpoints lack the counters
    dst = build_recognizer(backbone="i3d_tiny", head="rpl", num_classes=3)
    load_checkpoint(dst, tmp_path / "no_counters.pth", complete=True)
    _assert_same(src, dst, skip="num_batches_tracked")
    del state["cls_head.radius"]
    torch.save(state, tmp_path / "no_radius.pth")
    fresh = build_recognizer(backbone="i3d_tiny", head="rpl", num_classes=3)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"missing in checkpoint \(1\): cls_head.radius$"
                                              r"|missing in checkpoint \(1\): cls_head.radius\n"):
        load_checkpoint(fresh, tmp_path / "no_radius.pth", complete=True)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


def test_export_in_sdn_layout_reads_back_exactly(tmp_path):
    from dear_ray.models import build_recognizer, export_weights
    from dear_ray.train.checkpointing import save_checkpoint

    options = {"num_places": 4, "num_place_hidden_layers": 2}
    trained = _random(build_recognizer(backbone="r3d18_tiny", head="sdn", num_classes=6,
                                       head_options=options))
    folder = save_checkpoint(tmp_path / "checkpoint_epoch_0001", model=trained, epoch=1,
                             global_step=4)
    out = export_weights(folder, tmp_path / "sdn.pth", layout="sdn")
    keys = set(torch.load(out, weights_only=True)["state_dict"])
    # vt-vl-lab/SDN: DataParallel names, backbone at the top level, fc / place_mlp heads
    assert all(k.startswith("module.") for k in keys)
    assert {"module.conv1.weight", "module.fc.weight", "module.place_mlp.0.fc.weight",
            "module.place_mlp.p_last_fc.bias"} <= keys
    assert not any(k.startswith(("module.backbone.", "module.cls_head.")) for k in keys)
    again = build_recognizer(backbone="r3d18_tiny", head="sdn", num_classes=6,
                             head_options=options)
    report = load_checkpoint(again, out, complete=True)
    assert report.unexpected == [] and report.missing == []
    _assert_same(again, trained)
