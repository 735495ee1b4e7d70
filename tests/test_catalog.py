"""Spherical k-means, Eq. 1, the Catalog's state round trip, and building a catalog on the tiny generator."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from localedit.catalog import (
    Catalog,
    build_catalog,
    cluster_maps,
    contribution,
    contribution_sum,
    normalize_activations,
    resize_labels,
)
from localedit.kmeans import spherical_kmeans
from localedit.parts import Part, default_color, input_resolution


def _planted(n_per: int = 200, c: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows near 4 orthogonal directions, each at a random scale (cosine k-means must ignore the norm)."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.arange(4).repeat_interleave(n_per)
    directions = torch.eye(c)[:4] * 10
    x = directions[truth] + torch.randn(len(truth), c, generator=g)
    x = x * torch.empty(len(truth), 1).uniform_(0.1, 10, generator=g)
    order = torch.randperm(len(truth), generator=g)
    return x[order], truth[order]


def _assert_same_partition(labels: torch.Tensor, truth: torch.Tensor, k: int) -> None:
    """Labels equal the truth up to a permutation of cluster ids."""
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((truth, labels), torch.ones_like(truth), accumulate=True)
    assert ((confusion > 0).sum(dim=1) == 1).all() and ((confusion > 0).sum(dim=0) == 1).all(), confusion


def test_kmeans_recovers_planted_clusters():
    x, truth = _planted()
    centroids, labels = spherical_kmeans(x, 4, seed=0, batch_rows=97)  # odd batches cover the batch edges
    assert centroids.shape == (4, 16) and labels.shape == truth.shape
    assert torch.allclose(centroids.norm(dim=1), torch.ones(4), atol=1e-5)
    _assert_same_partition(labels, truth, 4)
    # The labels returned are the assignment to the centroids returned.
    assert torch.equal(labels, (x @ centroids.T).argmax(dim=1))
    # Each centroid points along its planted direction.
    assert (centroids.abs().max(dim=1).values > 0.95).all()


def test_kmeans_fitted_on_some_rows_labels_them_all():
    x, truth = _planted(n_per=500)
    centroids, labels = spherical_kmeans(x, 4, seed=0, fit_rows=64)
    assert labels.shape == truth.shape
    _assert_same_partition(labels, truth, 4)
    assert torch.equal(labels, (x @ centroids.T).argmax(dim=1))
    again = spherical_kmeans(x, 4, seed=0, fit_rows=64)
    assert torch.equal(again[0], centroids) and torch.equal(again[1], labels)
    other = spherical_kmeans(x, 4, seed=1, fit_rows=64)[0]  # another seed draws other rows
    assert not torch.equal(other, centroids)
    assert torch.equal(spherical_kmeans(x, 4, fit_rows=len(x))[0], spherical_kmeans(x, 4)[0])
    with pytest.raises(ValueError, match="fit_rows must be at least k"):
        spherical_kmeans(x, 4, fit_rows=3)


def test_kmeans_is_deterministic_and_batch_independent():
    x, _ = _planted(seed=1)
    c1, l1 = spherical_kmeans(x, 5, seed=3)
    c2, l2 = spherical_kmeans(x, 5, seed=3, batch_rows=64)
    c3, l3 = spherical_kmeans(x, 5, seed=3)
    assert torch.equal(c1, c3) and torch.equal(l1, l3)
    assert torch.equal(l1, l2) and torch.allclose(c1, c2, atol=1e-5)


def test_kmeans_reseeds_empty_clusters():
    x, truth = _planted(seed=2)
    # Three good centroids and a duplicate of the first, which loses every tie: the fourth cluster starts
    # empty, and only re-seeding it with a badly fitting row (one of planted cluster 3) recovers the partition.
    init = torch.zeros(4, 16)
    init[0, 0] = init[1, 1] = init[2, 2] = init[3, 0] = 1
    first = (x @ F.normalize(init, dim=1).T).argmax(dim=1)
    assert (first == 3).sum() == 0
    centroids, labels = spherical_kmeans(x, 4, init=init, max_iter=3)
    _assert_same_partition(labels, truth, 4)
    assert torch.bincount(labels, minlength=4).min() > 0


def test_kmeans_handles_zero_and_duplicate_rows():
    x = torch.cat([torch.zeros(5, 3), torch.tensor([[1.0, 0, 0]]).repeat(10, 1)])
    centroids, labels = spherical_kmeans(x, 3, seed=0)
    assert torch.isfinite(centroids).all() and labels.shape == (15,)
    assert len(set(labels[5:].tolist())) == 1  # identical rows share a cluster


def test_kmeans_validation():
    with pytest.raises(ValueError, match="k must be"):
        spherical_kmeans(torch.randn(3, 2), 4)
    with pytest.raises(ValueError, match="float tensor"):
        spherical_kmeans(torch.ones(3, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="init"):
        spherical_kmeans(torch.randn(10, 2), 2, init=torch.randn(3, 2))


def test_normalize_activations():
    torch.manual_seed(0)
    a = torch.randn(2, 3, 5, 7) * 4 + 2
    a[1, 2] = 3.0  # a constant channel normalises to zeros, not NaN
    out = normalize_activations(a)
    assert torch.allclose(out.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5)
    var = out.var(dim=(2, 3), correction=0)
    assert torch.allclose(var[0], torch.ones(3), atol=1e-4)
    assert torch.equal(out[1, 2], torch.zeros(5, 7))


def test_resize_labels_nearest():
    labels = torch.tensor([[[0, 1], [2, 3]]])
    up = resize_labels(labels, (4, 4))
    assert torch.equal(up, torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]]))
    big = torch.randint(10, (2, 12, 12), generator=torch.Generator().manual_seed(0))
    for size in ((6, 6), (3, 4), (5, 7), (24, 24), (12, 12)):
        expected = F.interpolate(big[:, None].float(), size=size, mode="nearest-exact")[:, 0].long()
        assert torch.equal(resize_labels(big, size), expected), size


def test_contribution_is_eq1_and_sums_to_one():
    g = torch.Generator().manual_seed(0)
    a = normalize_activations(torch.randn(3, 5, 8, 8, generator=g) * 3 + 1)
    for label_size in (4, 8, 16):  # labels coarser, equal and finer than the layer
        labels = torch.randint(4, (3, label_size, label_size), generator=g)
        m = contribution(a, labels, 4)
        assert m.shape == (4, 5) and (m >= 0).all()
        assert torch.allclose(m.sum(dim=0), torch.ones(5), atol=1e-5)
        u = F.one_hot(resize_labels(labels, (8, 8)), 4).permute(0, 3, 1, 2).float()  # U [N, K, H, W]
        brute = torch.stack([(a.square() * u[:, k:k + 1]).mean(dim=(0, 2, 3)) for k in range(4)])
        assert torch.allclose(m, brute, atol=1e-6)
        # §3.1's bilinear resize, checked against PIL's (antialiased) bilinear resize of each cluster's mask.
        m = contribution(a, labels, 4, resize="bilinear")
        assert torch.allclose(m.sum(dim=0), torch.ones(5), atol=1e-5)
        u = torch.tensor(np.array([[np.asarray(Image.fromarray((labels[n] == k).numpy().astype(np.float32), "F")
                                               .resize((8, 8), Image.BILINEAR)) for k in range(4)]
                                   for n in range(3)]))
        brute = torch.stack([(a.square() * u[:, k:k + 1]).mean(dim=(0, 2, 3)) for k in range(4)])
        assert torch.allclose(m, brute, atol=1e-4), label_size
        if label_size != 8:
            assert not torch.allclose(m, contribution(a, labels, 4), atol=1e-3)
    # Batches accumulate: sums over halves add up to the whole.
    labels = torch.randint(4, (3, 8, 8), generator=g)
    halves = contribution_sum(a[:1], labels[:1], 4) + contribution_sum(a[1:], labels[1:], 4)
    assert torch.allclose(halves / (3 * 64), contribution(a, labels, 4), atol=1e-6)
    with pytest.raises(ValueError, match="cluster ids"):
        contribution(a, labels + 4, 4)


def test_cluster_maps_is_max_cosine():
    x, _ = _planted(n_per=20)
    centroids, labels = spherical_kmeans(x, 4)
    a = x.T.reshape(1, 16, 8, 10)  # 80 rows as an [N=1, C, H, W] activation map
    assert torch.equal(cluster_maps(a, centroids).flatten(), labels)
    assert torch.equal(cluster_maps(a * 7, centroids), cluster_maps(a, centroids))
    assert torch.equal(cluster_maps(a, centroids, (8, 10)), cluster_maps(a, centroids))


def test_cluster_maps_upsampled_follow_the_boundary():
    # Two clusters split along the diagonal of an 8×8 map: upsampled ×4, the labels keep the interior of
    # each side (as nearest would) but the boundary runs along the diagonal, not in 4×4 steps.
    centroids = torch.eye(2)
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    below = (rows > cols).float()
    a = torch.stack([1 - below, below])[None] + 0.01  # [1, 2, 8, 8]
    up = cluster_maps(a, centroids, (32, 32))[0]
    assert up.shape == (32, 32)
    nearest = resize_labels(cluster_maps(a, centroids), (32, 32))[0]
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    far = (y - x).abs() > 6  # more than 1.5 coarse pixels from the diagonal
    assert torch.equal(up[far], nearest[far])
    exact = (y > x + 2).long()  # the boundary at pixel centres, shifted by the half-pixel of the coarse grid
    assert (up != exact).float().mean() < (nearest != exact).float().mean()


def _catalog(k: int = 4) -> Catalog:
    g = torch.Generator().manual_seed(0)
    m = {"conv1": torch.rand(k, 6, generator=g), "convs.0": torch.rand(k, 5, generator=g),
         "to_rgbs.0": torch.rand(k, 3, generator=g)}
    return Catalog(layer="convs.0", k=k, n_samples=10, truncation=0.7,
                   centroids=F.normalize(torch.randn(k, 5, generator=g), dim=1), M=m, seed=3,
                   timings={"generation": 1.5, "clustering": 0.25})


def test_parts_and_labelling():
    catalog = _catalog().with_parts({"eyes": [3, 1], "mouth": (0,)}, epsilon={"mouth": 4.0})
    eyes = catalog.parts["eyes"]
    assert eyes.clusters == (3, 1) and eyes.color == default_color("eyes") and eyes.threshold == 0.1
    assert catalog.parts["mouth"].epsilon == 4.0
    rows = catalog.part_rows("eyes")
    assert list(rows) == ["conv1", "convs.0", "to_rgbs.0"]
    assert all(torch.allclose(rows[k], catalog.M[k][3] + catalog.M[k][1]) for k in rows)
    # Relabelling keeps the other parts and the part's own settings.
    tuned = catalog.with_parts({}, epsilon={"eyes": 7.0})
    relabelled = tuned.with_parts({"eyes": [2]})
    assert relabelled.parts["eyes"].clusters == (2,) and relabelled.parts["eyes"].epsilon == 7.0
    assert set(relabelled.parts) == {"eyes", "mouth"}
    assert set(relabelled.without_parts(["mouth"]).parts) == {"eyes"}
    part = Part("nose", (0,), epsilon=2.0, epsilon_per_layer={"conv1": 0.5}, color="#ABCDEF")
    assert part.color == "#abcdef" and part.epsilon_per_layer == (("conv1", 0.5),)
    assert part.epsilon_map(["conv1", "convs.0"]) == {"conv1": 0.5, "convs.0": 2.0}
    with pytest.raises(ValueError, match="out of range"):
        catalog.with_parts({"hair": [4]})
    with pytest.raises(ValueError, match="parts that do not exist"):
        catalog.with_parts({}, epsilon={"hair": 1.0})
    strict = relabelled.with_parts({"hair": [1]}, threshold={"eyes": 0.3, "hair": 0.25})
    assert (strict.parts["eyes"].threshold, strict.parts["eyes"].epsilon) == (0.3, 7.0)
    assert strict.parts["hair"].threshold == 0.25 and strict.parts["mouth"].threshold == 0.1
    with pytest.raises(ValueError, match="parts that do not exist"):
        catalog.with_parts({}, threshold={"hair": 0.2})
    with pytest.raises(ValueError, match="threshold must be a number from 0 to 0.99"):
        catalog.with_parts({}, threshold={"eyes": 1.5})


def test_state_round_trip():
    catalog = _catalog().with_parts({"eyes": [3, 1]})
    catalog = catalog.with_parts({"nose": [0]}).with_parts({}, epsilon={"nose": 2.5})
    catalog = replace(catalog, parts={**catalog.parts, "nose": replace(catalog.parts["nose"],
                                                                         epsilon_per_layer={"to_rgbs.0": 0.0})})
    catalog = replace(catalog, examples={"eyes": (5, 2)})
    meta, tensors = catalog.to_state()
    assert set(tensors) == {"centroids", "conv1", "convs.0", "to_rgbs.0"}
    # Through real JSON text and safetensors bytes, as hub.py will store them.
    meta = json.loads(json.dumps(meta))
    tensors = load_safetensors(save_safetensors(tensors))
    back = Catalog.from_state(meta, tensors)
    assert (back.layer, back.k, back.n_samples, back.truncation, back.seed) == ("convs.0", 4, 10, 0.7, 3)
    assert back.fit_rows is None and meta["fit_rows"] is None
    fitted = Catalog.from_state({**meta, "fit_rows": 64}, tensors)
    assert fitted.fit_rows == 64 and fitted.to_state()[0]["fit_rows"] == 64
    older = {key: value for key, value in meta.items() if key not in ("fit_rows", "timings")}
    assert Catalog.from_state(older, tensors).fit_rows is None  # written before fit_rows existed
    assert back.parts == catalog.parts and dict(back.timings) == dict(catalog.timings)
    assert back.examples == {"eyes": (5, 2)} and meta["examples"] == {"eyes": [5, 2]}
    assert Catalog.from_state({k: v for k, v in meta.items() if k != "examples"}, tensors).examples == {}
    assert back.without_parts(["eyes"]).examples == {}  # an example goes with its part
    assert list(back.M) == list(catalog.M)  # synthesis order survives safetensors' sorted keys
    assert torch.equal(back.centroids, catalog.centroids)
    assert all(torch.equal(back.M[k], catalog.M[k]) for k in catalog.M)


def test_state_validation():
    meta, tensors = _catalog().with_parts({"eyes": [3]}).to_state()

    def broken(**changes):
        return {**json.loads(json.dumps(meta)), **changes}

    with pytest.raises(ValueError, match="out of range"):
        Catalog.from_state(broken(parts={"eyes": {**meta["parts"]["eyes"], "clusters": [4]}}), tensors)
    with pytest.raises(ValueError, match=r"centroids must have shape \[K=5"):
        Catalog.from_state(broken(k=5), tensors)
    with pytest.raises(ValueError, match=r"missing tensors \['conv1'\]"):
        Catalog.from_state(meta, {k: v for k, v in tensors.items() if k != "conv1"})
    with pytest.raises(ValueError, match=r"unexpected keys \['colour'\]"):
        Catalog.from_state(broken(colour=1), tensors)
    with pytest.raises(ValueError, match="#rrggbb"):
        Catalog.from_state(broken(parts={"eyes": {**meta["parts"]["eyes"], "color": "blue"}}), tensors)
    with pytest.raises(ValueError, match="unknown layers"):
        spec = {**meta["parts"]["eyes"], "epsilon_per_layer": {"convs.9": 1.0}}
        Catalog.from_state(broken(parts={"eyes": spec}), tensors)
    with pytest.raises(ValueError, match="epsilon"):
        Catalog.from_state(broken(parts={"eyes": {**meta["parts"]["eyes"], "epsilon": -1}}), tensors)
    with pytest.raises(ValueError, match="channels"):
        Catalog.from_state(meta, {**tensors, "centroids": torch.zeros(4, 6)})
    with pytest.raises(ValueError, match="format_version"):
        Catalog.from_state(broken(format_version=2), tensors)
    with pytest.raises(ValueError, match="fit_rows must be a positive integer"):
        Catalog.from_state(broken(fit_rows=0), tensors)
    for pair in ([1, 1], [1], [-1, 2], [1.5, 2], [True, 2]):
        with pytest.raises(ValueError, match="two different seeds"):
            Catalog.from_state(broken(examples={"eyes": pair}), tensors)
    with pytest.raises(ValueError, match="not a part"):
        Catalog.from_state(broken(examples={"hair": [1, 2]}), tensors)


def test_build_catalog_on_tiny_generator(tiny_generator):
    g = tiny_generator
    catalog = build_catalog(g, "convs.3", k=3, n_samples=6, seed=5, batch=4, progress=False)
    assert list(catalog.M) == list(g.style_layers)
    assert (catalog.layer, catalog.k, catalog.n_samples, catalog.seed) == ("convs.3", 3, 6, 5)
    assert set(catalog.timings) == {"generation", "clustering", "contribution", "total"}
    assert all(math.isfinite(t) and t >= 0 for t in catalog.timings.values())
    assert torch.allclose(catalog.centroids.norm(dim=1), torch.ones(3), atol=1e-5)
    with torch.no_grad():
        z = torch.cat([torch.randn(1, g.style_dim, generator=torch.Generator().manual_seed(s))
                       for s in range(5, 11)])
        styles = g.styles(g.truncate(g.mapping(z), 0.7))
        acts = g.layer_inputs(styles, g.style_layers)
    labels = cluster_maps(normalize_activations(acts["convs.3"]), catalog.centroids)  # [6, 16, 16]
    for name, m in catalog.M.items():
        assert m.shape == (3, acts[name].shape[1])
        assert torch.allclose(m.sum(dim=0), torch.ones(m.shape[1]), atol=1e-4)
        # The same numbers as Eq. 1 on all samples at once, at every layer's own resolution.
        assert torch.allclose(m, contribution(normalize_activations(acts[name]), labels, 3), atol=1e-5), name
    again = build_catalog(g, "convs.3", k=3, n_samples=6, seed=5, batch=4, progress=False)
    assert torch.equal(again.centroids, catalog.centroids)
    assert catalog.fit_rows is None
    fitted = build_catalog(g, "convs.3", k=3, n_samples=6, seed=5, batch=4, fit_rows=300, progress=False)
    assert fitted.fit_rows == 300 and not torch.equal(fitted.centroids, catalog.centroids)
    assert build_catalog(g, "convs.3", k=3, n_samples=1, fit_rows=300, progress=False).fit_rows is None  # 256 rows
    with pytest.raises(ValueError, match="unknown layer"):
        build_catalog(g, "convs.99", k=3, n_samples=2, progress=False)


def test_build_catalog_reports_progress_checks_k_and_stops_when_asked(tiny_generator):
    calls = []
    build_catalog(tiny_generator, "convs.2", k=3, n_samples=6, batch=4, progress=False,
                  callback=lambda *call: calls.append(call))
    stages = [stage for stage, _, _ in calls]
    assert stages[:2] == ["samples", "samples"] and stages[-2:] == ["M", "M"] and "k-means" in stages
    assert [c for c in calls if c[0] != "k-means"] == [("samples", 4, 6), ("samples", 6, 6), ("M", 4, 6), ("M", 6, 6)]
    # convs.2 upsamples: its input is 8×8, so a catalog of it has at most 64 clusters.
    assert input_resolution("convs.2") == 8 and input_resolution("convs.3") == input_resolution("to_rgbs.1") == 16
    for k in (0, 65):
        with pytest.raises(ValueError, match=r"K must be between 1 and the 8×8 = 64 pixels"):
            build_catalog(tiny_generator, "convs.2", k=k, n_samples=2, progress=False)
    with pytest.raises(ValueError, match="at least 1 sample"):
        build_catalog(tiny_generator, "convs.2", k=3, n_samples=0, progress=False)

    class Stop(Exception):
        pass

    def stop(stage, done, total):
        if stage == "k-means":
            raise Stop

    with pytest.raises(Stop):
        build_catalog(tiny_generator, "convs.2", k=3, n_samples=6, progress=False, callback=stop)
