import pytest
import torch
import torch.nn.functional as F

from dear_ray.models.backbones import BackboneOutput, create_backbone, list_backbones
from dear_ray.models.backbones.r3d18 import BasicBlock3d, shortcut_a
from dear_ray.models.backbones.tsm import temporal_shift
from dear_ray.registry import UnknownNameError

# 2 shared cores: intra-op threads oversubscribe under load (10x slower tiny steps measured)
torch.set_num_threads(1)

from tests.models._backbones import TINY  # noqa: E402

# the MMAction2 / DEAR / SDN backbones (the foundation ones: tests/models/test_foundation_backbones.py)
FULL = ["i3d_r50", "tsm_r50", "slowfast_r50", "slowfast_r50_8x8", "slowonly_r50", "tpn_slowonly_r50",
        "r3d18_a"]
_BUILT: dict[str, torch.nn.Module] = {}


def full(name: str) -> torch.nn.Module:
    """Full-size backbones are built once per test session (~0.3-1 s each on CPU)."""
    if name not in _BUILT:
        _BUILT[name] = create_backbone(name)
    return _BUILT[name]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_required_names_are_registered():
    required = {"i3d_r50", "tsm_r50", "slowfast_r50", "slowfast_r50_8x8", "slowonly_r50", "tpn_slowonly_r50",
                "r3d18_a", "i3d_tiny", "tsm_tiny", "slowfast_tiny", "tpn_tiny", "r3d18_tiny"}
    assert required <= set(list_backbones())


def test_unknown_name_and_option_are_named():
    with pytest.raises(UnknownNameError, match="unknown backbone 'i3d_r51'.*i3d_r50"):
        create_backbone("i3d_r51")
    with pytest.raises(TypeError, match=r"'i3d_tiny' got unknown option\(s\) \['pretrained'\]"):
        create_backbone("i3d_tiny", pretrained=None)
    with pytest.raises(TypeError, match="unknown ResNet3d option"):
        create_backbone("tpn_tiny", depth=50)


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_backward_contract(name):
    torch.manual_seed(0)
    model = create_backbone(name)
    out = model.forward_features(torch.randn(2, 3, 8, 32, 32))
    assert isinstance(out, BackboneOutput)
    assert all(m.dim() == 5 and m.shape[0] == 2 for m in out.maps)
    pooled = torch.cat([m.mean(dim=(2, 3, 4)) for m in out.maps], dim=1)
    assert pooled.shape == (2, model.num_features)
    assert out.debias_map.dim() == 5 and out.debias_map.shape[:2] == (2, model.debias_channels)
    if model.aux_channels == 0:
        assert out.aux_map is None
    else:
        assert out.aux_map.dim() == 5 and out.aux_map.shape[:2] == (2, model.aux_channels)
    loss = pooled.pow(2).sum() + out.debias_map.mean() + (0 if out.aux_map is None else out.aux_map.mean())
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters outside the graph: {no_grad}"


@pytest.mark.parametrize("name", FULL)
def test_full_size_contract_attributes(name):
    model = full(name)
    expected = {  # (num_features, debias_channels, aux_channels), SPEC 1.3
        "i3d_r50": (2048, 2048, 0), "tsm_r50": (2048, 2048, 0), "slowfast_r50": (2304, 2048, 0),
        "slowfast_r50_8x8": (2304, 2048, 0), "slowonly_r50": (2048, 2048, 0),
        "tpn_slowonly_r50": (2048, 1024, 1024), "r3d18_a": (512, 512, 0),
    }[name]
    assert (model.num_features, model.debias_channels, model.aux_channels) == expected


# MMAction2 model-zoo figures (backbone + Linear(num_features, 400)); r3d18 from Hara et al.'s repo.
PUBLISHED = {"i3d_r50": 28.04e6, "tsm_r50": 24.33e6, "slowfast_r50": 34.48e6, "slowfast_r50_8x8": 34.57e6,
             "slowonly_r50": 32.45e6, "r3d18_a": 33.2e6}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_model_zoo(name):
    model = full(name)
    count = n_params(model) + model.num_features * 400 + 400
    print(f"{name}: {count:,} parameters with a 400-class classifier (published {PUBLISHED[name] / 1e6:.2f}M)")
    assert abs(count - PUBLISHED[name]) / PUBLISHED[name] < 0.005


def test_tpn_parameter_count_matches_metafile_exactly():
    model = full("tpn_slowonly_r50")
    # MMAction2's AuxHead on layer 3 (built by our Recognizer): conv 1024->2048 (1,3,3) + BN + fc 2048->400
    aux_head = 1024 * 2048 * 9 + 2 * 2048 + 2048 * 400 + 400
    total = n_params(model) + 2048 * 400 + 400 + aux_head
    print(f"tpn_slowonly_r50: {total:,} parameters with TPNHead + AuxHead (metafile 91,498,336)")
    assert total == 91_498_336  # configs/recognition/tpn/metafile.yml


def test_mmaction2_key_names_and_shapes():
    i3d = full("i3d_r50").state_dict()
    assert i3d["conv1.conv.weight"].shape == (64, 3, 5, 7, 7)
    assert "conv1.bn.weight" in i3d and "layer1.0.downsample.bn.running_var" in i3d
    assert i3d["layer1.0.downsample.conv.weight"].shape == (256, 64, 1, 1, 1)
    # inflate ((1,1,1),(1,0,1,0),...) with '3x1x1': conv1 is 3x1x1 where inflated, conv2 always 1x3x3
    assert i3d["layer2.0.conv1.conv.weight"].shape == (128, 256, 3, 1, 1)
    assert i3d["layer2.1.conv1.conv.weight"].shape == (128, 512, 1, 1, 1)
    assert i3d["layer4.0.conv1.conv.weight"].shape[2] == 1 and i3d["layer4.1.conv1.conv.weight"].shape[2] == 3
    assert i3d["layer3.0.conv2.conv.weight"].shape == (256, 256, 1, 3, 3)
    so = full("slowonly_r50").state_dict()
    assert so["conv1.conv.weight"].shape == (64, 3, 1, 7, 7)
    assert so["layer2.0.conv1.conv.weight"].shape[2] == 1 and so["layer3.0.conv1.conv.weight"].shape[2] == 3
    sf = full("slowfast_r50").state_dict()
    assert sf["slow_path.conv1_lateral.conv.weight"].shape == (16, 8, 5, 1, 1)
    assert sf["slow_path.layer1_lateral.conv.weight"].shape == (64, 32, 5, 1, 1)
    assert sf["slow_path.layer3_lateral.conv.weight"].shape == (256, 128, 5, 1, 1)
    assert "slow_path.layer4_lateral.conv.weight" not in sf
    assert sf["slow_path.layer2.0.conv1.conv.weight"].shape == (128, 256 + 64, 1, 1, 1)
    assert sf["fast_path.conv1.conv.weight"].shape == (8, 3, 5, 7, 7)
    assert sf["fast_path.layer4.2.conv3.conv.weight"].shape == (256, 64, 1, 1, 1)
    assert full("slowfast_r50_8x8").state_dict()["slow_path.layer1_lateral.conv.weight"].shape == (64, 32, 7, 1, 1)
    tsm = full("tsm_r50").state_dict()
    assert tsm["layer1.0.conv1.conv.net.weight"].shape == (64, 64, 1, 1)
    assert tsm["layer1.0.conv1.bn.weight"].shape == (64,) and tsm["conv1.conv.weight"].shape == (64, 3, 7, 7)
    tpn = full("tpn_slowonly_r50").state_dict()
    assert tpn["neck.spatial_modulation.spatial_modulation.0.0.conv.weight"].shape == (2048, 1024, 1, 3, 3)
    assert tpn["neck.temporal_modulation_ops.1.conv.conv.weight"].shape == (1024, 64, 3, 1, 1)
    assert tpn["neck.level_fusion_2.downsamples.0.conv.conv.weight"].shape == (1024, 32, 1, 1, 1)
    assert tpn["neck.pyramid_fusion.conv.weight"].shape == (2048, 4096, 1, 1, 1)
    r3d = full("r3d18_a").state_dict()
    assert r3d["conv1.weight"].shape == (64, 3, 7, 7, 7) and "bn1.weight" in r3d
    assert r3d["layer2.0.conv1.weight"].shape == (128, 64, 3, 3, 3)
    assert not any("downsample" in k for k in r3d)  # shortcut A has no parameters


def test_full_size_forward_shapes_on_a_small_clip():
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        i3d = full("i3d_r50").eval().forward_features(x)
        r3d = full("r3d18_a").eval().forward_features(x)
    # I3D: time /2 (conv1) /2 (pool1) /2 (pool2); space /32
    assert i3d.maps[0].shape == (1, 2048, 1, 2, 2)
    # R3D-18: time /2 (maxpool) /2 /2 (layers 2, 3; layer 4 stays at 1); space /32
    assert r3d.maps[0].shape == (1, 512, 1, 2, 2)


def test_init_like_mmaction2():
    i3d, so = full("i3d_r50"), full("slowonly_r50")
    assert torch.all(i3d.layer1[0].conv3.bn.weight == 1)  # i3d_r50 config: zero_init_residual=False
    assert torch.all(so.layer1[0].conv3.bn.weight == 0)  # ResNet3dSlowOnly default: True
    assert torch.all(so.layer1[0].conv2.bn.weight == 1) and torch.all(so.layer1[0].conv2.bn.bias == 0)
    w = so.layer4[0].conv2.conv.weight  # kaiming normal, fan_out: std = sqrt(2 / (out * k))
    expected = (2 / (w.shape[0] * w[0, 0].numel())) ** 0.5
    assert abs(w.std().item() / expected - 1) < 0.02


def test_temporal_shift_against_hand_computation():
    n, t, c = 2, 4, 8
    x = torch.arange(n * t * c, dtype=torch.float32).view(n * t, c, 1, 1) + 1  # no zero entries
    out = temporal_shift(x, num_segments=t, shift_div=4).view(n, t, c)
    xv = x.view(n, t, c)
    fold = c // 4
    for b in range(n):
        for s in range(t):
            for ch in range(c):
                if ch < fold:  # from the next frame; zero at the last frame
                    want = xv[b, s + 1, ch] if s + 1 < t else 0.0
                elif ch < 2 * fold:  # from the previous frame; zero at the first frame
                    want = xv[b, s - 1, ch] if s > 0 else 0.0
                else:
                    want = xv[b, s, ch]
                assert out[b, s, ch] == want, (b, s, ch)
    assert (out == 0).sum() == n * 2 * fold


def test_tsm_rejects_wrong_number_of_frames_and_folds_time():
    model = create_backbone("tsm_tiny", num_segments=4)
    with pytest.raises(ValueError, match=r"T=4.*\(2, 3, 8, 32, 32\)"):
        model.forward_features(torch.randn(2, 3, 8, 32, 32))
    model = create_backbone("tsm_tiny").eval()  # 8 segments, 4 blocks: each shifts one frame each way
    x = torch.randn(2, 3, 8, 32, 32)
    x2 = x.clone()
    x2[:, :, 7] = 0  # change only the last frame
    with torch.no_grad():
        out = model.forward_features(x).maps[0]
        out2 = model.forward_features(x2).maps[0]
    assert out.shape == (2, 256, 8, 1, 1)
    changed = [not torch.allclose(out[:, :, t], out2[:, :, t]) for t in range(8)]
    # four shifted blocks: frame t sees frames t-4..t+4, so frames 0-2 cannot see frame 7
    assert changed == [False, False, False, True, True, True, True, True]


def test_slowfast_samples_every_tau_and_tau_over_alpha_frame():
    model = create_backbone("slowfast_tiny", resample_rate=8, speed_ratio=4)
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 16, 1, 1).expand(1, 3, 16, 2, 2)
    slow, fast = model.sample_pathways(x)
    assert slow[0, 0, :, 0, 0].tolist() == [0, 8]
    assert fast[0, 0, :, 0, 0].tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    # same frames as MMAction2's nearest-neighbour interpolation, also when T is not a multiple of tau
    x = torch.arange(30, dtype=torch.float32).view(1, 1, 30, 1, 1).expand(1, 3, 30, 2, 2)
    slow, fast = model.sample_pathways(x)
    assert torch.equal(slow, F.interpolate(x, mode="nearest", scale_factor=(1 / 8, 1.0, 1.0)))
    assert torch.equal(fast, F.interpolate(x, mode="nearest", scale_factor=(1 / 2, 1.0, 1.0)))
    with pytest.raises(ValueError, match="multiple of speed_ratio"):
        create_backbone("slowfast_tiny", resample_rate=8, speed_ratio=3)


def test_slowfast_output_frame_rates():
    model = create_backbone("slowfast_tiny").eval()  # tau 4, alpha 4
    with torch.no_grad():
        out = model.forward_features(torch.randn(1, 3, 16, 32, 32))
    fast, slow = out.maps  # fast-first, as MMAction2's SlowFastHead concatenates them
    assert slow.shape[2] == 4 and fast.shape[2] == 16
    assert slow.shape[1] == 256 and fast.shape[1] == 64  # stage-4 widths 4 x 8 x 2^3, 4 x 2 x 2^3
    assert out.debias_map is slow


def test_shortcut_a_is_strided_identity_plus_zero_channels():
    x = torch.randn(2, 4, 5, 6, 6)
    out = shortcut_a(x, 8, 2)
    assert out.shape == (2, 8, 3, 3, 3)
    assert torch.equal(out[:, :4], x[:, :, ::2, ::2, ::2])
    assert torch.count_nonzero(out[:, 4:]) == 0


def test_basic_block_uses_shortcut_a():
    block = BasicBlock3d(4, 8, stride=2).eval()
    torch.nn.init.zeros_(block.bn2.weight)  # residual branch contributes bn2.bias = 0
    x = torch.randn(1, 4, 4, 6, 6)
    with torch.no_grad():
        out = block(x)
    expected = torch.relu(torch.cat([x[:, :, ::2, ::2, ::2], torch.zeros(1, 4, 2, 3, 3)], 1))
    assert torch.equal(out, expected)


@pytest.mark.parametrize("detach", [True, False])
def test_shortcut_a_gradient_is_cut_as_sdn_releases_it(detach):
    # SDN models/resnet.py downsample_basic_block: torch.cat([out.data, zero_pads]) -> no gradient
    # reaches the block input through a down-sampling shortcut; an identity shortcut
    # (`residual = x`) passes it. With bn2's weight 0 the residual branch is the constant bn2.bias
    # = 0 (eval mode), so out = relu(shortcut(x)) and d sum(out) / dx is, by hand:
    #   down-sampling, detached (SDN): 0 everywhere (the conv branch gets a zero gradient from bn2)
    #   down-sampling, not detached:   1[x > 0] at the strided positions (t, h, w all even), else 0
    #   identity (stride 1, same width): 1[x > 0] everywhere, detached or not
    x = torch.tensor([[0.5, -1.0, 2.0], [-0.5, 1.5, -2.0], [3.0, 0.25, -0.75]])
    x = torch.stack([x, -x]).reshape(1, 2, 1, 3, 3).repeat(1, 1, 3, 1, 1)  # (1, 2, 3, 3, 3)
    x[:, :, 1] *= -1.0  # frame 1 (skipped by stride 2) differs from frames 0 and 2
    down = BasicBlock3d(2, 4, stride=2, detach_shortcut=detach).eval()
    same = BasicBlock3d(2, 2, stride=1, detach_shortcut=detach).eval()
    grads = {}
    for name, block in (("down", down), ("same", same)):
        torch.nn.init.zeros_(block.bn2.weight)
        xi = x.clone().requires_grad_(True)
        out = block(xi)
        out.sum().backward()
        grads[name] = xi.grad
    positive = (x > 0).float()
    expected_down = torch.zeros_like(x)
    if not detach:
        expected_down[:, :, ::2, ::2, ::2] = positive[:, :, ::2, ::2, ::2]
    assert torch.equal(grads["down"], expected_down)
    assert torch.equal(grads["same"], positive)
    assert out.shape == x.shape and positive.sum() > 0


def test_r3d18_a_detaches_its_shortcuts_as_released_and_tiny_keeps_the_gradient():
    def projecting(model):
        blocks = [b for b in model.modules() if isinstance(b, BasicBlock3d)]
        return {b.detach_shortcut for b in blocks if b.project}

    assert projecting(full("r3d18_a")) == {True}
    assert projecting(create_backbone("r3d18_a", detach_shortcut=False)) == {False}
    assert projecting(create_backbone("r3d18_tiny")) == {False}  # the demo's network, unchanged
    assert projecting(create_backbone("r3d18_tiny", detach_shortcut=True)) == {True}
    with pytest.raises(ValueError, match="detach_shortcut must be true or false, got 'yes'"):
        create_backbone("r3d18_tiny", detach_shortcut="yes")
    # same forward either way
    torch.manual_seed(0)
    a = create_backbone("r3d18_tiny", detach_shortcut=True).eval()
    b = create_backbone("r3d18_tiny").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x).maps[0], b(x).maps[0])
