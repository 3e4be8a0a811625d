"""Hard z-buffer rasterization in pure torch, and what is built on it (interpolation, visibility, labels).

For a pixel centre p and a triangle with projected corners (a, b, c) and depths (z_a, z_b, z_c) the edge
functions are

    w_a = (b − p) × (c − p),   w_b = (c − p) × (a − p),   w_c = (a − p) × (b − p)

(2D cross products: twice the signed areas of the sub-triangles), ``A = w_a + w_b + w_c``.  The pixel is
inside when ``A ≠ 0`` and every ``w_i · sign(A) ≥ 0`` (either winding; a pixel centre on a shared edge
belongs to both triangles).  Screen barycentrics are ``l_i = w_i / A``; 1/z is linear in screen space under
perspective, so the pixel's depth and its perspective-correct barycentrics are

    z = 1 / Σ_i (l_i / z_i),   λ_i = z · l_i / z_i.

The nearest triangle wins (``scatter_reduce`` amin on z); equal depths go to the lowest triangle index, so
the result is deterministic.  The search runs without gradients over the candidate pairs of
:mod:`fit3dmm.render.pairs`; the winners' λ and z are then recomputed with autograd, so :func:`interpolate`
is differentiable in the attributes and, inside triangles, in the vertex positions and depths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fit3dmm.render.pairs import DEFAULT_MAX_PAIRS, check_mesh_inputs, pixel_triangle_pairs


@dataclass
class Fragments:
    """Per-pixel rasterization output for B images of H × W pixels.

    ``face_index`` (B, H, W) int64: the winning triangle, −1 on background.  ``bary`` (B, H, W, 3):
    perspective-correct barycentrics of the winner (0 on background).  ``zbuf`` (B, H, W): depth, +inf on
    background.
    """

    face_index: Tensor
    bary: Tensor
    zbuf: Tensor

    @property
    def mask(self) -> Tensor:
        """(B, H, W) bool, the pixels covered by a triangle."""
        return self.face_index >= 0


def triangle_winding(points2d: Tensor, triangles: Tensor) -> Tensor:
    """(B, T) twice the signed projected area ``(b − a) × (c − a)`` in pixel coordinates (y down).

    A triangle wound counter-clockwise seen from outside (the :class:`~fit3dmm.models.face_model.FaceModel`
    convention) faces the camera exactly when this is negative, under any pinhole projection.
    """
    a, b, c = points2d[:, triangles].unbind(2)
    ab, ac = b - a, c - a
    return ab[..., 0] * ac[..., 1] - ab[..., 1] * ac[..., 0]


def _edge_functions(corners: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Corners (N, 6) = (a_x, a_y, b_x, b_y, c_x, c_y) and points (N,), (N,) → (w_a, w_b, w_c), each (N,).

    Computed on coordinates relative to the point, so large pixel coordinates lose no precision.
    """
    ax, ay, bx, by, cx, cy = (corners[:, k] - (x if k % 2 == 0 else y) for k in range(6))
    return bx * cy - by * cx, cx * ay - cy * ax, ax * by - ay * bx


def _perspective(w: tuple[Tensor, Tensor, Tensor], inv_z: Tensor) -> tuple[Tensor, Tensor]:
    """Edge functions and (N, 3) inverse corner depths → (λ (N, 3), z (N,)), see the module docstring."""
    q = torch.stack(w, dim=-1) * inv_z  # ∝ l_i / z_i
    s = q.sum(-1, keepdim=True)
    return q / s, (w[0] + w[1] + w[2]) / s.squeeze(-1)


def _covering_pairs(points2d: Tensor, depth: Tensor, triangles: Tensor, h: int, w: int,
                    max_pairs: int) -> tuple[Tensor, Tensor, Tensor]:
    """All (pixel, triangle) pairs with the pixel centre inside the triangle, without gradients.

    Returns batch-flat pixel indices (M,), batch-flat triangle indices b·T + t (M,) and depths z (M,).
    """
    bsz, nt = points2d.shape[0], triangles.shape[0]
    with torch.no_grad():
        p2 = points2d.detach()
        corners = p2[:, triangles].reshape(bsz * nt, 6)
        inv_z = (1.0 / depth.detach().to(p2.dtype))[:, triangles].reshape(bsz * nt, 3)
        drawable = triangle_winding(p2, triangles) != 0
        pix_list, face_list, z_list = [], [], []
        for pairs in pixel_triangle_pairs(p2, triangles, (h, w), 0.0, depth, triangle_mask=drawable,
                                          max_pairs=max_pairs):
            wa, wb, wc = _edge_functions(corners[pairs.face], pairs.x.to(p2.dtype), pairs.y.to(p2.dtype))
            area = wa + wb + wc
            inside = (wa * area >= 0) & (wb * area >= 0) & (wc * area >= 0)
            face = pairs.face[inside]
            iz = inv_z[face]
            wa, wb, wc, area = wa[inside], wb[inside], wc[inside], area[inside]
            z_list.append(area / (wa * iz[:, 0] + wb * iz[:, 1] + wc * iz[:, 2]))
            pix_list.append(pairs.pixel[inside])
            face_list.append(face)
        if not pix_list:
            empty = torch.zeros(0, dtype=torch.long, device=p2.device)
            return empty, empty, p2.new_zeros(0)
        return torch.cat(pix_list), torch.cat(face_list), torch.cat(z_list)


def _zbuffer(pix: Tensor, z: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Nearest depth per pixel (B, H, W), +inf where no pair falls."""
    zbuf = z.new_full((shape[0] * shape[1] * shape[2],), float("inf"))
    return zbuf.scatter_reduce_(0, pix, z, reduce="amin").view(shape)


def rasterize(
    points2d: Tensor,
    depth: Tensor,
    triangles: Tensor,
    image_size: tuple[int, int],
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> Fragments:
    """Z-buffer rasterization of B meshes sharing one triangle list.

    Args:
        points2d: (B, V, 2) projected vertices in pixels (x right, y down, pixel centres at integers).
        depth: (B, V) view depths (−Z); triangles with a corner at depth ≤ 0 are not drawn.
        triangles: (T, 3) int64.
        image_size: (H, W).
        max_pairs: candidate pairs evaluated at once (bounds memory).
    Returns:
        :class:`Fragments`; ``bary`` and ``zbuf`` carry gradients to ``points2d`` and ``depth``.
    """
    h, w = check_mesh_inputs(points2d, triangles, image_size)
    if depth.shape != points2d.shape[:2]:
        raise ValueError(f"depth must be {tuple(points2d.shape[:2])}, got {tuple(depth.shape)}")
    bsz, v, nt = points2d.shape[0], points2d.shape[1], triangles.shape[0]
    pix, tri, z = _covering_pairs(points2d, depth, triangles, h, w, max_pairs)
    with torch.no_grad():
        best = z == _zbuffer(pix, z, (bsz, h, w)).flatten()[pix]  # ties: the lowest triangle index wins
        first = torch.full((bsz * h * w,), bsz * nt, dtype=torch.long, device=points2d.device)
        first.scatter_reduce_(0, pix[best], tri[best], reduce="amin")
        face = torch.where(first < bsz * nt, first % max(nt, 1), -1).view(bsz, h, w)
    fg = (face >= 0).flatten().nonzero().squeeze(1)  # batch-flat pixel indices of the foreground
    batch = fg // (h * w)
    vid = (triangles[face.flatten()[fg]] + (batch * v).unsqueeze(1)).flatten()  # batch-flat vertex ids
    corners = points2d.reshape(bsz * v, 2).index_select(0, vid).view(-1, 6)
    inv_z = 1.0 / depth.reshape(bsz * v).to(points2d.dtype).index_select(0, vid).view(-1, 3)
    pix = fg % (h * w)
    x, y = (pix % w).to(points2d.dtype), (pix // w).to(points2d.dtype)
    lam, z = _perspective(_edge_functions(corners, x, y), inv_z)
    bary = points2d.new_zeros((bsz * h * w, 3)).index_copy(0, fg, lam).view(bsz, h, w, 3)
    zbuf = points2d.new_full((bsz * h * w,), float("inf")).index_copy(0, fg, z).view(bsz, h, w)
    return Fragments(face_index=face, bary=bary, zbuf=zbuf)


def interpolate(fragments: Fragments, triangles: Tensor, attributes: Tensor) -> Tensor:
    """Perspective-correct interpolation of per-vertex attributes (B, V, C) → (B, H, W, C), 0 on background.

    ``out[b, y, x] = Σ_i λ_i · attributes[b, triangles[f, i]]`` with f the winning triangle; differentiable
    in ``attributes`` and through ``fragments.bary``.
    """
    face = fragments.face_index
    bsz, h, w = face.shape
    if attributes.ndim != 3 or attributes.shape[0] != bsz:
        raise ValueError(f"attributes must be (B={bsz}, V, C), got {tuple(attributes.shape)}")
    v, ch = attributes.shape[1:]
    fg = (face >= 0).flatten().nonzero().squeeze(1)
    vid = (triangles[face.flatten()[fg]] + ((fg // (h * w)) * v).unsqueeze(1)).flatten()
    values = attributes.reshape(bsz * v, ch).index_select(0, vid).view(-1, 3, ch)
    lam = fragments.bary.reshape(bsz * h * w, 3).index_select(0, fg).to(values.dtype)
    out = (lam.unsqueeze(-1) * values).sum(1)
    return attributes.new_zeros((bsz * h * w, ch)).index_copy(0, fg, out).view(bsz, h, w, ch)


def vertex_visibility(
    points2d: Tensor,
    depth: Tensor,
    triangles: Tensor,
    image_size: tuple[int, int],
    normals: Tensor | None = None,
    tol: float = 1e-3,
    fragments: Fragments | None = None,
) -> Tensor:
    """(B, V) bool, no gradient: the vertex faces the camera, projects into the image and is not occluded.

    Facing: with ``normals`` (B, V, 3) in camera space (+z towards the viewer), ``n_z > 0`` (the
    orthographic test, which misjudges only surfaces within half the field of view of grazing); without,
    the vertex belongs to a triangle whose projected winding faces the camera (:func:`triangle_winding`
    < 0, exact under perspective).

    Not occluded: ``depth ≤ (1 + tol) · max_k zbuf(q_k)`` over the (up to) four pixel centres q_k around the
    vertex (floor/ceil of x and y, those inside the image).  The front surface through a visible vertex
    passes through its pixel square, and on a planar patch 1/z is linear in screen space, so one of the
    four corners is at least as deep as the vertex; no triangle needs to win a pixel, which makes the test
    work on dense meshes whose triangles are smaller than a pixel.  An occluded vertex fails when its
    occluder covers all four pixel centres; near an occluding contour (within a pixel) it may pass.  ``tol``
    (relative) absorbs rounding and the curvature of creases.  Pass ``fragments`` to reuse a rasterization.
    """
    h, w = check_mesh_inputs(points2d, triangles, image_size)
    bsz, v = points2d.shape[:2]
    if depth.shape != (bsz, v):
        raise ValueError(f"depth must be ({bsz}, {v}), got {tuple(depth.shape)}")
    with torch.no_grad():
        p2, dz = points2d.detach(), depth.detach().to(points2d.dtype)
        if normals is None:
            front = (triangle_winding(p2, triangles) < 0).to(torch.int32).repeat_interleave(3, dim=1)
            count = torch.zeros((bsz, v), dtype=torch.int32, device=p2.device)
            facing = count.index_add_(1, triangles.flatten(), front) > 0
        else:
            if normals.shape != (bsz, v, 3):
                raise ValueError(f"normals must be ({bsz}, {v}, 3), got {tuple(normals.shape)}")
            facing = normals[..., 2] > 0
        if fragments is None:
            pix, _, z = _covering_pairs(p2, dz, triangles, h, w, DEFAULT_MAX_PAIRS)
            zbuf = _zbuffer(pix, z, (bsz, h, w))
        else:
            zbuf = fragments.zbuf.detach().to(p2.dtype)
        finite = torch.isfinite(p2).all(-1)
        xy = torch.where(finite.unsqueeze(-1), p2, torch.full_like(p2, -2.0)).clamp(-2.0, max(h, w) + 1.0)
        nearest = xy.round()
        in_image = ((nearest >= 0) & (nearest < nearest.new_tensor([w, h]))).all(-1)
        x0, y0 = xy[..., 0].floor().long(), xy[..., 1].floor().long()
        flat = zbuf.reshape(bsz, h * w)
        deepest = torch.full_like(dz, float("-inf"))
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            x, y = x0 + dx, y0 + dy
            ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            z = flat.gather(1, (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)))
            deepest = torch.maximum(deepest, torch.where(ok, z, float("-inf")))
        return facing & in_image & finite & (dz > 0) & (dz <= (1.0 + tol) * deepest)


def render_labels(
    points2d: Tensor,
    depth: Tensor,
    triangles: Tensor,
    vertex_labels: Tensor,
    image_size: tuple[int, int],
    fragments: Fragments | None = None,
) -> Tensor:
    """(B, H, W) int64 label map, no gradient: the label of the winning triangle's corner with the largest
    barycentric, −1 on background.  ``vertex_labels`` (V,) int64 (−1 allowed).  Pass ``fragments`` to reuse
    a rasterization."""
    check_mesh_inputs(points2d, triangles, image_size)
    if vertex_labels.shape != points2d.shape[1:2] or vertex_labels.dtype != torch.long:
        raise ValueError(f"vertex_labels must be int64 ({points2d.shape[1]},), got {vertex_labels.dtype} "
                         f"{tuple(vertex_labels.shape)}")
    with torch.no_grad():
        if fragments is None:
            fragments = rasterize(points2d, depth, triangles, image_size)
        face = fragments.face_index
        fg = face >= 0
        corner = fragments.bary[fg].argmax(-1, keepdim=True)
        vid = triangles[face[fg]].gather(1, corner).squeeze(1)
        out = torch.full_like(face, -1)
        out[fg] = vertex_labels.to(face.device)[vid]
        return out
