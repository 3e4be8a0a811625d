"""Hard rasterizer, interpolation, labels and vertex visibility against dense brute-force references."""

import math

import pytest
import torch

from fit3dmm.render.camera import PerspectiveCamera
from fit3dmm.render.rasterize import interpolate, rasterize, render_labels, vertex_visibility

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def brute_raster(points2d, depth, triangles, h, w):
    """All pixels × all triangles: barycentrics by solving the 2×2 system, first minimum depth wins."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=points2d.dtype), torch.arange(w, dtype=points2d.dtype),
                            indexing="ij")
    p = torch.stack([xs, ys], -1).reshape(-1, 1, 2)  # (HW, 1, 2)
    faces, barys, zbufs = [], [], []
    for b in range(points2d.shape[0]):
        a, bb, c = points2d[b, triangles].unbind(1)  # (T, 2) each
        m = torch.stack([a - c, bb - c], dim=-1)  # (T, 2, 2): columns a − c, b − c
        ok = m.det().abs() > 1e-12
        m = torch.where(ok[:, None, None], m, torch.eye(2, dtype=m.dtype))
        l01 = torch.linalg.solve(m.expand(p.shape[0], -1, -1, -1), (p - c).unsqueeze(-1)).squeeze(-1)
        lam = torch.cat([l01, 1 - l01.sum(-1, keepdim=True)], -1)  # (HW, T, 3) screen barycentrics
        inside = (lam >= 0).all(-1) & ok & (depth[b, triangles] > 0).all(-1)
        q = lam / depth[b, triangles]
        z = torch.where(inside, 1 / q.sum(-1), torch.inf)
        zmin, first = z.min(dim=1)  # min returns the first index among equal values
        face = torch.where(torch.isfinite(zmin), first, -1)
        persp = q / q.sum(-1, keepdim=True)
        bary = persp[torch.arange(p.shape[0]), first] * torch.isfinite(zmin).unsqueeze(-1)
        faces.append(face.view(h, w))
        barys.append(bary.view(h, w, 3))
        zbufs.append(zmin.view(h, w))
    return torch.stack(faces), torch.stack(barys), torch.stack(zbufs)


def random_mesh(seed, b=2, v=24, t=30, h=19, w=23, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(b, v, 2, generator=g, dtype=dtype) * torch.tensor([w + 6.0, h + 6.0], dtype=dtype) - 3
    depth = torch.rand(b, v, generator=g, dtype=dtype) * 5 + 1
    # distinct vertex sets: two windings of one triangle tie in depth only up to rounding
    triangles = torch.stack([torch.randperm(v, generator=g)[:3] for _ in range(4 * t)])
    _, first = torch.unique(triangles.sort(1).values, dim=0, return_inverse=True)
    keep = [i for i in range(4 * t) if int(first[i]) not in first[:i].tolist()][:t]
    return points, depth, triangles[keep]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rasterize_matches_brute_force(device, seed):
    points, depth, triangles = random_mesh(seed)
    depth[1, 0] = -2.0  # triangles through vertex 0 are behind the camera in item 1
    triangles[5] = triangles[3]  # an exact duplicate: equal depths, the lower index must win
    ref_face, ref_bary, ref_z = brute_raster(points, depth, triangles, 19, 23)
    frag = rasterize(points.to(device), depth.to(device), triangles.to(device), (19, 23), max_pairs=97)
    assert (ref_face >= 0).float().mean() > 0.5  # mostly covered, many overlaps (30 random triangles)
    assert not (ref_face == 5).any()
    assert torch.equal(frag.face_index.cpu(), ref_face)
    torch.testing.assert_close(frag.bary.cpu(), ref_bary, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(frag.zbuf.cpu(), ref_z, atol=1e-9, rtol=1e-9)


def test_rasterize_shared_edge_is_deterministic():
    # a square split along its diagonal, integer corners: pixel centres on the diagonal lie in both halves
    points = torch.tensor([[[1.0, 1.0], [6.0, 1.0], [6.0, 6.0], [1.0, 6.0]]])
    depth = torch.full((1, 4), 2.0)
    for order in ([[0, 1, 2], [0, 2, 3]], [[0, 2, 3], [0, 1, 2]]):
        frag = rasterize(points, depth, torch.tensor(order), (8, 8))
        diag = torch.stack([frag.face_index[0, i, i] for i in range(1, 7)])
        assert torch.equal(diag, torch.zeros(6, dtype=torch.long))  # ties go to triangle 0
        assert int(frag.mask.sum()) == 36  # the 6 × 6 closed square
        assert torch.all(frag.zbuf[frag.mask] == 2.0)


def test_interpolate_is_perspective_correct_and_differentiable():
    cam = PerspectiveCamera.for_crop(32, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    verts = torch.rand(1, 12, 3, generator=g, dtype=torch.float64) * torch.tensor([8.0, 8.0, 10.0]) - \
        torch.tensor([4.0, 4.0, 40.0])
    triangles = torch.randint(0, 12, (10, 3), generator=g)
    points, depth = cam.project(verts)
    frag = rasterize(points, depth, triangles, (32, 32))
    attrs = verts.clone().requires_grad_(True)
    xyz = interpolate(frag, triangles, attrs)  # the 3D point of each pixel's winning triangle
    m = frag.mask[0]
    assert m.sum() > 50
    ys, xs = torch.nonzero(m, as_tuple=True)
    pix = torch.stack([xs, ys], -1).to(torch.float64).unsqueeze(0)
    expected = cam.unproject(pix, frag.zbuf[0, ys, xs].unsqueeze(0))[0]
    torch.testing.assert_close(xyz[0, ys, xs], expected, atol=1e-9, rtol=1e-9)
    assert torch.all(xyz[0][~m] == 0)
    (xyz * torch.randn_like(xyz)).sum().backward()
    assert attrs.grad is not None and attrs.grad.abs().sum() > 0

    def f(p, d, a):
        fr = rasterize(p, d, triangles, (32, 32))
        return interpolate(fr, triangles, a)

    # positions and depths: gradient through the recomputed barycentrics (winners fixed by the tiny step)
    torch.autograd.gradcheck(f, (points.requires_grad_(), depth.requires_grad_(), verts.requires_grad_()),
                             eps=1e-7, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("device", DEVICES)
def test_render_labels_matches_brute_force(device):
    points, depth, triangles = random_mesh(4)
    labels = torch.randint(-1, 5, (24,), generator=torch.Generator().manual_seed(5))
    ref_face, ref_bary, _ = brute_raster(points, depth, triangles, 19, 23)
    corner = triangles[ref_face.clamp_min(0)].gather(-1, ref_bary.argmax(-1, keepdim=True)).squeeze(-1)
    expected = torch.where(ref_face >= 0, labels[corner], -1)
    got = render_labels(points.to(device), depth.to(device), triangles.to(device), labels.to(device),
                        (19, 23))
    assert torch.equal(got.cpu(), expected)
    assert len(expected.unique()) >= 5


def grid_mesh(n, x0, x1, y0, y1, z):
    """An n × n vertex grid on the plane z (camera space), triangles wound CCW seen from +z."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(y0 + (y1 - y0) * t, x0 + (x1 - x0) * t, indexing="ij")
    verts = torch.stack([xx, yy, torch.full_like(xx, z)], -1).reshape(-1, 3)
    i = torch.arange(n - 1)
    a = (i[:, None] * n + i[None, :]).reshape(-1)
    tris = torch.cat([torch.stack([a, a + 1, a + n + 1], 1), torch.stack([a, a + n + 1, a + n], 1)])
    return verts, tris


def test_vertex_visibility_dense_occlusion():
    # a dense back plane (triangles ≈ 0.1 px², far smaller than a pixel) partly hidden by a front square
    cam = PerspectiveCamera.for_crop(64, dtype=torch.float64)
    back, tb = grid_mesh(120, -6.0, 6.0, -6.0, 6.0, -100.0)
    front, tf = grid_mesh(6, -2.0, 2.0, -2.0, 2.0, -80.0)
    verts = torch.cat([back, front]).unsqueeze(0)
    tris = torch.cat([tb, tf + back.shape[0]])
    points, depth = cam.project(verts)
    vis = vertex_visibility(points, depth, tris, (64, 64))[0]
    assert vis[back.shape[0]:].all()  # the whole front square
    # the square's image: |x − c| ≤ 2 · f / 80 pixels around the centre c
    half = 2.0 * float(cam.focal) / 80.0
    off = (points[0, : back.shape[0]] - float(cam.principal[0, 0])).abs().amax(-1)
    inside_image = (points[0, : back.shape[0]] > -0.5).all(-1) & (points[0, : back.shape[0]] < 63.5).all(-1)
    hidden = off < half - 1.0
    shown = (off > half + 1.0) & inside_image
    assert hidden.sum() > 1000 and shown.sum() > 3000
    assert not vis[: back.shape[0]][hidden].any()
    assert vis[: back.shape[0]][shown].all()
    # reversing the winding makes every triangle face away: nothing is visible
    assert not vertex_visibility(points, depth, tris.flip(1), (64, 64)).any()


def uv_sphere(n_lat, n_lon, radius, centre):
    lat = torch.linspace(0, math.pi, n_lat, dtype=torch.float64)[1:-1]
    lon = torch.linspace(0, 2 * math.pi, n_lon + 1, dtype=torch.float64)[:-1]
    la, lo = torch.meshgrid(lat, lon, indexing="ij")
    ring = torch.stack([la.sin() * lo.cos(), la.cos(), la.sin() * lo.sin()], -1).reshape(-1, 3)
    verts = torch.cat([ring, torch.tensor([[0.0, 1, 0], [0, -1, 0]], dtype=torch.float64)]) * radius + centre
    nr, top, bottom = n_lat - 2, ring.shape[0], ring.shape[0] + 1
    tris = []
    for i in range(nr - 1):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            tris += [[a, b, d], [a, d, c]]
    last = (nr - 1) * n_lon
    for j in range(n_lon):
        tris += [[top, (j + 1) % n_lon, j], [bottom, last + j, last + (j + 1) % n_lon]]
    tris = torch.tensor(tris)
    # orient every triangle outwards (CCW seen from outside)
    a, b, c = verts[tris].unbind(1)
    flip = (torch.linalg.cross(b - a, c - a) * (a - centre)).sum(-1) < 0
    tris[flip] = tris[flip].flip(1)
    return verts, tris


@pytest.mark.parametrize("use_normals", [False, True])
def test_vertex_visibility_sphere(use_normals):
    cam = PerspectiveCamera.for_crop(96, dtype=torch.float64)
    centre = torch.tensor([1.0, -0.5, -60.0], dtype=torch.float64)
    verts, tris = uv_sphere(60, 80, 5.0, centre)
    points, depth = cam.project(verts.unsqueeze(0))
    normals = ((verts - centre) / 5.0).unsqueeze(0) if use_normals else None
    vis = vertex_visibility(points, depth, tris, (96, 96), normals)[0]
    # exact answer on a sphere: visible iff the outward normal points towards the camera centre
    cosine = ((verts - centre) / 5.0 * (-verts / verts.norm(dim=-1, keepdim=True))).sum(-1)
    sure = cosine.abs() > 0.15
    assert sure.sum() > 0.7 * len(verts)
    assert torch.equal(vis[sure], (cosine > 0)[sure])


def test_validation_errors():
    points, depth, triangles = random_mesh(0, b=1)
    with pytest.raises(ValueError, match="depth must be"):
        rasterize(points, depth[:, :3], triangles, (8, 8))
    with pytest.raises(ValueError, match="image_size"):
        rasterize(points, depth, triangles, (0, 8))
    with pytest.raises(ValueError, match="vertex_labels"):
        render_labels(points, depth, triangles, torch.zeros(3, dtype=torch.long), (8, 8))
    with pytest.raises(ValueError, match="normals"):
        vertex_visibility(points, depth, triangles, (8, 8), torch.zeros(1, 3, 3))
