"""FaceModel forward, region restriction and quad splitting against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fit3dmm.models.face_model import FaceModel, quads_to_triangles


def test_forward_matches_hand_computation(tiny_model):
    identity = torch.tensor([[1.0, 0.5]])
    expression = torch.tensor([[2.0, 0.0]])
    out = tiny_model(identity, expression)
    mean = tiny_model.mean.numpy()
    expected = mean.copy()
    expected[:, 0] += 0.1 * mean[:, 0] * 1.0  # identity mode 0 widens by 10 % per unit
    expected[4, 2] += 0.5  # identity mode 1 moves the apex forward by 1 cm per unit
    expected[0, 1] -= 2.0  # expression 0 lowers corner 0 by 1 cm per unit
    np.testing.assert_allclose(out.vertices[0].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(out.albedo[0].numpy(), np.full((5, 3), 0.5), atol=1e-6)


def test_forward_is_batched_and_accepts_fewer_coefficients(tiny_model):
    ident = torch.tensor([[1.0], [0.0], [-1.0]])
    out = tiny_model(identity=ident).vertices
    assert out.shape == (3, 5, 3)
    np.testing.assert_allclose(out[1].numpy(), tiny_model.mean.numpy())
    np.testing.assert_allclose(out[2, 1, 0].item(), 5.0 * 0.9, rtol=1e-6)
    with pytest.raises(ValueError, match="identity coefficients"):
        tiny_model(identity=torch.zeros(1, 3))


def test_albedo_is_clamped_to_unit_range(tiny_model):
    albedo = tiny_model(albedo=torch.tensor([[10.0]])).albedo
    assert float(albedo.max()) == 1.0


def test_quads_to_triangles_keeps_winding():
    faces = np.array([[0, 1, 2, 3], [3, 2, 4, -1]])
    tri = quads_to_triangles(faces)
    np.testing.assert_array_equal(tri, [[0, 1, 2], [3, 2, 4], [0, 2, 3]])


def test_region_remaps_indices(tiny_model):
    sub_model = FaceModel("t", tiny_model.mean.numpy(), tiny_model.identity_basis.numpy(),
                          tiny_model.expression_basis.numpy(), tiny_model.triangles.numpy(),
                          np.full(68, 4), face_vertices=np.array([1, 2, 4]))
    sub = sub_model.region()
    assert sub.num_vertices == 3
    np.testing.assert_array_equal(sub.triangles.numpy(), [[0, 1, 2]])  # only triangle (1, 2, 4) survives
    assert (sub.landmarks68 == 2).all()
    np.testing.assert_array_equal(sub.parent_vertices.numpy(), [1, 2, 4])
    full = sub_model(identity=torch.tensor([[0.3, 0.2]])).vertices[:, [1, 2, 4]]
    np.testing.assert_allclose(sub(identity=torch.tensor([[0.3, 0.2]])).vertices.numpy(), full.numpy())


def test_invalid_shapes_are_refused():
    with pytest.raises(ValueError, match="mean must be"):
        FaceModel("x", np.zeros((4, 2)), np.zeros((1, 4, 3)), np.zeros((1, 4, 3)), np.zeros((1, 3)), np.zeros(68))
    with pytest.raises(ValueError, match="triangles"):
        FaceModel("x", np.zeros((4, 3)), np.zeros((1, 4, 3)), np.zeros((1, 4, 3)), np.array([[0, 1, 9]]),
                  np.zeros(68))


def test_ict_loads_with_face_region_and_arkit_names(ict_model):
    assert ict_model.num_vertices == 26719
    assert ict_model.num_identity == 100 and ict_model.num_expression == 53
    assert ict_model.expression_names[26] == "jawOpen"
    assert ict_model.expression_range == (0.0, 1.0)
    region = ict_model.face_vertices.numpy()
    assert region[:9409].tolist() == list(range(9409))  # the face region, then the eyeballs
    assert set(region[9409:]) == set(range(21451, 24591))
