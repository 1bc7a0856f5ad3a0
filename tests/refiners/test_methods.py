"""Each refiner against an obviously right reference on tiny grids."""

import numpy as np
import pytest
import torch

import clipapro
from clipapro.refiners.crf_tree import crf_tree, rgb_to_lab
from clipapro.refiners.pamr import pamr


def _path_max(n, edges, weights):
    """O(N^2) largest edge weight on the tree path between every pair of nodes (BFS from each)."""
    adj = [[] for _ in range(n)]
    for (a, b), w in zip(edges.tolist(), weights.tolist(), strict=True):
        adj[a].append((b, w))
        adj[b].append((a, w))
    m = np.zeros((n, n))
    for s in range(n):
        seen, stack = {s}, [(s, 0.0)]
        while stack:
            u, best = stack.pop()
            m[s, u] = best
            for v, w in adj[u]:
                if v not in seen:
                    seen.add(v)
                    stack.append((v, max(best, w)))
    return m


def _dense_messages(img, zeta):
    """Self-excluded all-pairs tree affinities (N, N) of a (1, 3, h, w) image, by brute force."""
    h, w = img.shape[-2:]
    edges, weights = clipapro.grid_mst(img)
    a = np.exp(-_path_max(h * w, edges[0], weights[0]) / zeta**2)
    np.fill_diagonal(a, 0.0)
    return a


def _message(a, q, norm):
    mass = a.sum(1, keepdims=True)
    if norm == "row":
        return a @ q / mass
    if norm == "sym":
        return (a @ (q / np.sqrt(mass))) / np.sqrt(mass)
    return a @ q


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("norm", ["row", "sym", "none"])
def test_crf_tree_matches_dense_mean_field(norm):
    torch.manual_seed(0)
    h, w, k = 4, 5, 3
    img = torch.rand(1, 3, h, w, dtype=torch.float64)
    p = torch.softmax(torch.randn(1, k, h, w, dtype=torch.float64), 1)
    zeta, wt, eps, iters = 0.4, 2.0, 1e-4, 3
    a = _dense_messages(img, zeta)
    pf = p[0].reshape(k, -1).T.numpy()
    unary = np.log(np.maximum(pf, eps))
    q = pf
    for _ in range(iters):
        q = _softmax(unary + wt * _message(a, q, norm))
    out = crf_tree(img, p, zeta=zeta, w_tree=wt, iterations=iters, norm=norm, eps=eps, scale=1, w_local=0.0)
    np.testing.assert_allclose(out[0].reshape(k, -1).T.numpy(), q, atol=1e-8)


def test_crf_tree_lowres_matches_dense_reference():
    """scale=2: mean field on the 2x2-averaged grid, then one full-size step with its message."""
    torch.manual_seed(2)
    h, w, k, s = 6, 8, 3, 2
    img = torch.rand(1, 3, h, w, dtype=torch.float64)
    p = torch.softmax(torch.randn(1, k, h, w, dtype=torch.float64), 1)
    zeta, wt, eps, iters = 0.3, 3.0, 1e-4, 3
    pool = torch.nn.functional.avg_pool2d
    a = _dense_messages(pool(img, s), zeta)
    ps = pool(p, s)[0].reshape(k, -1).T.numpy()
    q = ps
    for _ in range(iters - 1):
        q = _softmax(np.log(np.maximum(ps, eps)) + wt * _message(a, q, "sym"))
    msg = torch.from_numpy(_message(a, q, "sym").T.reshape(1, k, h // s, w // s).copy())
    msg = torch.nn.functional.interpolate(msg, size=(h, w), mode="bilinear", align_corners=False)
    ref = torch.softmax(torch.log(p.clamp_min(eps)) + wt * msg, 1)
    out = crf_tree(img, p, zeta=zeta, w_tree=wt, iterations=iters, eps=eps, scale=s, w_local=0.0)
    torch.testing.assert_close(out, ref, atol=1e-8, rtol=0)


def test_crf_tree_suppresses_absent_classes():
    img = torch.rand(1, 3, 6, 6)
    p = torch.full((1, 4, 6, 6), 0.02)
    p[:, 0] = 0.5
    p[:, 1] = 0.44
    p[:, 1, 0, 0] = 0.9  # class 1 peaks at 0.9 once; classes 2 and 3 never exceed 0.02
    p[:, 0, 0, 0] = 0.04
    out = crf_tree(img, p, suppress=0.1)
    assert float(out[:, 2:].abs().max()) == 0.0
    torch.testing.assert_close(out.sum(1), torch.ones(1, 6, 6))


def test_lab_of_known_colours():
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).T.reshape(1, 3, 3, 1)
    lab = rgb_to_lab(rgb)[0, :, :, 0].T * 100
    torch.testing.assert_close(lab[0], torch.tensor([100.0, 0.0, 0.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(lab[1], torch.tensor([0.0, 0.0, 0.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(lab[2], torch.tensor([53.24, 80.09, 67.20]), atol=0.1, rtol=0)


def test_pamr_matches_loop_reference():
    torch.manual_seed(0)
    h, w, k, dil, steps = 5, 6, 2, (1, 2), 2
    img = torch.rand(1, 3, h, w, dtype=torch.float64)
    p = torch.softmax(torch.randn(1, k, h, w, dtype=torch.float64), 1)
    x, q = img[0].numpy(), p[0].numpy()
    offs = [(dy * d, dx * d) for d in dil for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]

    def at(a, y, x_):  # replicate border
        return a[:, min(max(y, 0), h - 1), min(max(x_, 0), w - 1)]

    alpha = np.zeros((len(offs), h, w))
    for y in range(h):
        for x_ in range(w):
            window = [at(x, y + dy, x_ + dx) for dy, dx in offs] + [x[:, y, x_]] * len(dil)
            sigma = np.std(np.stack(window, 1), axis=1, ddof=1)
            kk = [-np.mean(np.abs(x[:, y, x_] - at(x, y + dy, x_ + dx)) / (1e-8 + 0.1 * sigma)) for dy, dx in offs]
            e = np.exp(np.array(kk) - max(kk))
            alpha[:, y, x_] = e / e.sum()
    for _ in range(steps):
        q = np.array([[[sum(alpha[m, y, x_] * at(q, y + dy, x_ + dx)[c] for m, (dy, dx) in enumerate(offs))
                        for x_ in range(w)] for y in range(h)] for c in range(k)])
    out = pamr(img, p, steps=steps, dilations=dil)
    np.testing.assert_allclose(out[0].numpy(), q, atol=1e-10)
