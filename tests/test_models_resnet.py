"""Our ResNet-50 against torchvision's architecture definition: names, shapes, forward, weight loading."""

from __future__ import annotations

import pytest
import torch

from fit3dmm.models.resnet import ResNet50, load_backbone_weights

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, channels: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.{k}", () if k == "num_batches_tracked" else (channels,)) for k in BN_KEYS]


def torchvision_resnet50_layout() -> list[tuple[str, tuple[int, ...]]]:
    """state_dict (name, shape) of ``torchvision.models.resnet50()``, written out from its definition:
    ``ResNet(Bottleneck, [3, 4, 6, 3])``, Bottleneck expansion 4, ``conv1`` 7×7/2 with 64 channels, the
    stride on the 3×3 conv, a 1×1 projection ``downsample = Sequential(conv1x1, BatchNorm2d)`` on the first
    block of each stage, ``fc = Linear(2048, 1000)``."""
    keys = [("conv1.weight", (64, 3, 7, 7)), *_bn("bn1", 64)]
    inplanes = 64
    for stage, (blocks, width) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512)), start=1):
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            keys += [(f"{p}.conv1.weight", (width, inplanes, 1, 1)), *_bn(f"{p}.bn1", width),
                     (f"{p}.conv2.weight", (width, width, 3, 3)), *_bn(f"{p}.bn2", width),
                     (f"{p}.conv3.weight", (4 * width, width, 1, 1)), *_bn(f"{p}.bn3", 4 * width)]
            if block == 0:
                keys += [(f"{p}.downsample.0.weight", (4 * width, inplanes, 1, 1)),
                         *_bn(f"{p}.downsample.1", 4 * width)]
            inplanes = 4 * width
    return [*keys, ("fc.weight", (1000, 2048)), ("fc.bias", (1000,))]


@pytest.fixture(scope="module")
def net() -> ResNet50:
    torch.manual_seed(0)
    return ResNet50().eval()


def test_state_dict_matches_torchvision_names_and_shapes(net):
    expected = torchvision_resnet50_layout()
    got = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert got == expected  # same names, same shapes, same order
    assert len(got) == 320
    # torchvision documents resnet50 as 25,557,032 parameters
    assert sum(p.numel() for p in net.parameters()) == 25_557_032


def test_forward_shapes_and_strides(net):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert net(x).shape == (2, 1000)
        assert net.features(x).shape == (2, 2048)
        assert net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))))).shape \
            == (2, 2048, 2, 2)  # overall stride 32
    head = ResNet50(num_outputs=7)
    assert head(x).shape == (2, 7)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        net(torch.rand(2, 1, 64, 64))


def test_state_dict_round_trips_through_a_file(net, tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(net.state_dict(), path)
    torch.manual_seed(1)
    other = ResNet50().eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(other(x), net(x))
        other.load_state_dict(torch.load(path, weights_only=True))
        assert torch.equal(other(x), net(x))


def test_torchvision_checkpoint_loads_into_a_coefficient_head(net, tmp_path):
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)  # DDP-style file
    head = ResNet50(num_outputs=159)
    fc_before = head.fc.weight.detach().clone()
    skipped = load_backbone_weights(head, path)
    assert skipped == ["fc.weight", "fc.bias"]  # 1000 classes ≠ 159 coefficients
    assert torch.equal(head.fc.weight, fc_before)
    for key, value in net.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(head.state_dict()[key], value), key


def test_wrong_checkpoints_are_refused(net, tmp_path):
    state = dict(net.state_dict())
    state["layer2.0.conv2.weight"] = torch.zeros(1, 1, 3, 3)
    with pytest.raises(ValueError, match=r"layer2\.0\.conv2\.weight"):
        load_backbone_weights(ResNet50(), state)
    del state["layer2.0.conv2.weight"]
    with pytest.raises(ValueError, match=r"missing layer2\.0\.conv2\.weight"):
        load_backbone_weights(ResNet50(), state)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_backbone_weights(ResNet50(), bad)
