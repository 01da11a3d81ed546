"""The metric math against closed forms, hand-made sets and independent reference implementations."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from ganforge.metrics import (
    RunningStats,
    class_coverage,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    prdc,
    precision_recall,
    stacked_mnist_modes,
    synthetic_modes,
    trace_sqrt_product,
)


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ---------------------------------------------------------------------------------------------- references


def pytorch_fid_reference(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's ``calculate_frechet_distance`` code path (scipy sqrtm, eps offset if singular)."""
    linalg = pytest.importorskip("scipy.linalg")
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def torch_fidelity_reference(mu1, sigma1, mu2, sigma2):
    """torch-fidelity 0.4's formula: square roots of the eigenvalues of S1 S2."""
    diff = mu1 - mu2
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(sigma1.dot(sigma2)).astype("complex128")).real)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def mmd2_brute_force(x, y, degree=3, coef0=1.0):
    """The unbiased MMD^2 U-statistic written out term by term with loops."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + coef0) ** degree

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def prdc_brute_force(real, fake, k):
    """Full distance matrices and the papers' definitions, boundary inclusive."""
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    r_real = np.sort(dist(real, real), axis=1)[:, k]
    r_fake = np.sort(dist(fake, fake), axis=1)[:, k]
    d_rf = dist(real, fake)
    inside = d_rf <= r_real[:, None]
    return {
        "precision": inside.any(axis=0).mean(),
        "recall": (d_rf <= r_fake[None, :]).any(axis=1).mean(),
        "density": inside.sum(axis=0).mean() / k,
        "coverage": inside.any(axis=1).mean(),
    }


# ---------------------------------------------------------------------------------------------- RunningStats


def test_running_stats_batches_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(503, 17)) * rng.uniform(0.1, 3, size=17) + rng.normal(size=17)
    stats = RunningStats()
    for lo, hi in [(0, 1), (1, 1), (1, 64), (64, 300), (300, 301), (301, 503)]:  # incl. empty and 1-row batches
        stats.update(x[lo:hi])
    assert stats.n == 503
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=0, atol=1e-10)


def test_running_stats_torch_input_and_large_offset():
    # a mean 1e4 times the spread: naive sum(x x^T) - n mu mu^T would lose ~8 digits here
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 5)) + 1e4
    stats = RunningStats()
    for chunk in np.array_split(x, 7):
        stats.update(torch.from_numpy(chunk))
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    # float32 tensors are accumulated in float64
    x32 = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    s32 = RunningStats()
    s32.update(x32[:20])
    s32.update(x32[20:])
    np.testing.assert_allclose(s32.cov, np.cov(x32.double().numpy(), rowvar=False), rtol=0, atol=1e-12)


def test_running_stats_merge_and_errors():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 4))
    a, b, whole = RunningStats(), RunningStats(), RunningStats()
    a.update(x[:30])
    b.update(x[30:])
    whole.update(x)
    a.merge(b)
    np.testing.assert_allclose(a.cov, whole.cov, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="feature size"):
        a.update(rng.normal(size=(3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        a.update(np.full((2, 4), np.nan))
    one = RunningStats()
    one.update(x[:1])
    with pytest.raises(ValueError, match="at least 2"):
        _ = one.cov
    with pytest.raises(ValueError):
        _ = RunningStats().mean


def test_running_stats_npz_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 6))
    stats = RunningStats()
    stats.update(x[:40])
    path = tmp_path / "cache" / "ref.npz"
    stats.to_npz(path, meta={"extractor": "mnist-cnn", "size": 28})
    assert sorted(os.listdir(path.parent)) == ["ref.npz"]  # no temp file left behind
    with np.load(path, allow_pickle=False) as z:  # plain keys, readable without ganforge (pytorch-fid: mu, sigma)
        assert set(z.files) == {"mu", "sigma", "n", "meta"}
    back = RunningStats.from_npz(path)
    assert back.n == 40 and back.meta == {"extractor": "mnist-cnn", "size": 28}
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.cov, stats.cov)
    back.update(x[40:])  # a loaded accumulator keeps streaming
    np.testing.assert_allclose(back.cov, np.cov(x, rowvar=False), rtol=0, atol=1e-10)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError):
        RunningStats.from_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "partial.npz", mu=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        RunningStats.from_npz(tmp_path / "partial.npz")


# ---------------------------------------------------------------------------------------------- FID


def test_fid_matches_pytorch_fid_and_torch_fidelity():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(500, 64))
    b = rng.normal(size=(500, 64)) @ (np.eye(64) + 0.2 * rng.normal(size=(64, 64))) + 0.3
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours > 1.0
    assert rel_err(ours, pytorch_fid_reference(mu1, s1, mu2, s2)) < 1e-6
    assert rel_err(ours, torch_fidelity_reference(mu1, s1, mu2, s2)) < 1e-6


def test_fid_singular_covariances():
    # fewer samples than features: both covariances are rank 39 out of 64
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(40, 64)), rng.normal(size=(40, 64)) + 0.5
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert math.isfinite(ours)
    assert rel_err(ours, torch_fidelity_reference(mu1, s1, mu2, s2)) < 1e-6
    assert rel_err(ours, pytorch_fid_reference(mu1, s1, mu2, s2)) < 1e-6


def test_trace_sqrt_product_exactly_singular():
    # zero variances in different coordinates: neither matrix has a Cholesky factor (the eigh fallback)
    a = np.array([0.0, 1.0, 4.0, 2.0, 0.5])
    b = np.array([3.0, 0.0, 9.0, 0.5, 2.0])
    assert abs(trace_sqrt_product(np.diag(a), np.diag(b)) - float(np.sum(np.sqrt(a * b)))) < 1e-12
    # one singular, one definite: the definite one is factored
    assert abs(trace_sqrt_product(np.diag(a), np.diag(b + 1)) - float(np.sum(np.sqrt(a * (b + 1))))) < 1e-12


def test_fid_closed_forms():
    rng = np.random.default_rng(6)
    d = 12
    s = random_spd(rng, d)
    mu = rng.normal(size=d)
    # identical Gaussians
    assert frechet_distance(mu, s, mu, s) < 1e-9 * np.trace(s)
    # equal covariances: FID = ||shift||^2 exactly
    shift = rng.normal(size=d)
    assert rel_err(frechet_distance(mu, s, mu + shift, s), float(shift @ shift)) < 1e-9
    # diagonal covariances: sum of (sqrt(a_i) - sqrt(b_i))^2
    va, vb = rng.uniform(0.1, 4, size=d), rng.uniform(0.1, 4, size=d)
    expected = float(shift @ shift + np.sum((np.sqrt(va) - np.sqrt(vb)) ** 2))
    assert rel_err(frechet_distance(mu, np.diag(va), mu + shift, np.diag(vb)), expected) < 1e-10
    # symmetric in its two arguments
    s2 = random_spd(rng, d)
    assert rel_err(frechet_distance(mu, s, mu + shift, s2), frechet_distance(mu + shift, s2, mu, s)) < 1e-9


def test_fid_from_samples_grows_with_shift():
    rng = np.random.default_rng(7)
    d, n = 4, 20_000
    direction = np.ones(d) / 2.0  # unit vector
    real = RunningStats()
    real.update(rng.normal(size=(n, d)))
    fids = []
    for size in [0.0, 0.5, 1.0, 2.0]:
        fake = RunningStats()
        for chunk in np.array_split(rng.normal(size=(n, d)) + size * direction, 4):
            fake.update(chunk)
        fids.append(frechet_distance(real.mean, real.cov, fake.mean, fake.cov))
        assert abs(fids[-1] - size ** 2) < 0.02 + 0.02 * size ** 2
    assert fids == sorted(fids) and fids[0] < 0.01


def test_fid_rejects_bad_input():
    s = np.eye(3)
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(np.zeros(3), -s, np.zeros(3), s)


# ---------------------------------------------------------------------------------------------- KID


def test_mmd2_unbiased_matches_brute_force():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3)) + 0.7
    assert abs(mmd2_unbiased(x, y) - mmd2_brute_force(x, y)) < 1e-10
    # KID with one subset equal to the whole (equal-size) sets is that same statistic
    y6 = rng.normal(size=(6, 3)) + 0.7
    mean, std = kernel_inception_distance(x, y6, subsets=1, subset_size=6)
    assert abs(mean - mmd2_brute_force(x, y6)) < 1e-10 and std == 0.0
    # subset_size is clipped to the smaller set: every subset is then a permutation of it
    mean5, std5 = kernel_inception_distance(y6, y6[:5] + 0.1, subsets=3, subset_size=1000)
    assert math.isfinite(mean5) and std5 >= 0.0


def test_kid_same_distribution_near_zero_and_grows_with_shift():
    rng = np.random.default_rng(9)
    real = rng.normal(size=(1000, 16))
    same = rng.normal(size=(1000, 16))
    kid0, std0 = kernel_inception_distance(real, same, subsets=5, subset_size=200)
    assert abs(kid0) < 3 * std0 + 1e-3
    kids = [kernel_inception_distance(real, same + s, subsets=5, subset_size=200)[0] for s in (0.25, 0.5, 1.0)]
    assert kid0 < kids[0] < kids[1] < kids[2]
    assert kids[0] > 10 * abs(kid0)


def test_kid_is_seeded():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(40, 4))
    first = kernel_inception_distance(a, b, subsets=5, subset_size=20, seed=1)
    assert first == kernel_inception_distance(a, b, subsets=5, subset_size=20, seed=1)
    assert first != kernel_inception_distance(a, b, subsets=5, subset_size=20, seed=2)


# ---------------------------------------------------------------------------------------------- IS


def test_inception_score_extremes():
    k, n = 10, 1000
    one_hot_cycling = np.eye(k)[np.arange(n) % k]
    assert abs(inception_score(one_hot_cycling, splits=1)[0] - 10.0) < 1e-6
    mean, std = inception_score(one_hot_cycling, splits=10)
    assert abs(mean - 10.0) < 1e-6 and std < 1e-9
    all_one_class = np.eye(k)[np.zeros(n, dtype=int)]
    assert abs(inception_score(all_one_class, splits=1)[0] - 1.0) < 1e-12
    uniform = np.full((n, k), 1.0 / k)  # spread out in aggregate but no confidence per sample
    assert abs(inception_score(uniform, splits=5)[0] - 1.0) < 1e-12


def test_inception_score_matches_entropy_identity():
    # E_x KL(p(y|x) || p(y)) = H(p(y)) - E_x H(p(y|x)): an independent route, through torch's Categorical
    rng = np.random.default_rng(11)
    logits = torch.from_numpy(rng.normal(size=(300, 7)) * 2)
    probs = torch.softmax(logits, dim=1)
    scores = []
    for part in probs.split(100):
        h_marginal = torch.distributions.Categorical(probs=part.mean(0)).entropy()
        h_conditional = torch.distributions.Categorical(probs=part).entropy().mean()
        scores.append(math.exp(float(h_marginal - h_conditional)))
    mean, std = inception_score(probs.float(), splits=3)
    assert rel_err(mean, float(np.mean(scores))) < 1e-5 and abs(std - float(np.std(scores))) < 1e-5
    assert abs(inception_score(probs, splits=3)[0] - float(np.mean(scores))) < 1e-12  # float64 in, float64 exact
    with pytest.raises(ValueError, match="logits"):
        inception_score(logits, splits=1)


# ---------------------------------------------------------------------------------------------- PRDC


def test_prdc_identical_sets():
    rng = np.random.default_rng(12)
    real = rng.normal(size=(200, 8))
    out = prdc(real, real.copy(), k=5)
    assert out["precision"] == 1.0 and out["recall"] == 1.0 and out["coverage"] == 1.0
    assert out["density"] >= 1.0 / 5  # each fake is at least inside its twin's ball
    assert precision_recall(real, real, k=3) == {"precision": 1.0, "recall": 1.0}


def test_prdc_far_away_fakes():
    rng = np.random.default_rng(13)
    real = rng.normal(size=(100, 4))
    out = prdc(real, rng.normal(size=(80, 4)) + 100.0, k=5)
    assert out == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_half_of_two_clusters():
    rng = np.random.default_rng(14)
    cluster_a = rng.normal(size=(150, 2)) * 0.1
    cluster_b = rng.normal(size=(150, 2)) * 0.1 + 50.0
    real = np.concatenate([cluster_a, cluster_b])
    fake = rng.normal(size=(300, 2)) * 0.1  # a fresh draw from cluster A only
    out = prdc(real, fake, k=5)
    assert 0.4 <= out["recall"] <= 0.5 and 0.4 <= out["coverage"] <= 0.5
    assert out["precision"] > 0.9
    exact = precision_recall(real, cluster_a, k=3)  # the fakes are A itself: exactly half the reals recalled
    assert exact == {"precision": 1.0, "recall": 0.5}


def test_prdc_chunking_and_brute_force():
    rng = np.random.default_rng(15)
    real, fake = rng.normal(size=(90, 5)), rng.normal(size=(70, 5)) * 1.3 + 0.3
    expected = prdc_brute_force(real, fake, k=4)
    for chunk_size in (7, 1024):
        got = prdc(real, fake, k=4, chunk_size=chunk_size)
        for key, value in expected.items():
            assert abs(got[key] - value) < 1e-12, (key, chunk_size)
    assert 0 < expected["precision"] < 1 and 0 < expected["recall"] < 1
    with pytest.raises(ValueError, match="k must be"):
        prdc(real[:5], fake, k=5)


def test_prdc_ball_boundary_counts_as_inside():
    # 1-D lattice, k = 1: every real ball has radius 1; the fake at 4 sits exactly on the ball of the real at 3
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[4.0], [10.0]])
    assert precision_recall(real, fake, k=1)["precision"] == 0.5


# ---------------------------------------------------------------------------------------------- modes


RING8 = np.stack([2 * np.cos(2 * np.pi * np.arange(8) / 8), 2 * np.sin(2 * np.pi * np.arange(8) / 8)], axis=1)


@pytest.mark.parametrize("used, kl", [(8, 0.0), (4, math.log(2)), (1, math.log(8))])
def test_synthetic_modes_ring(used, kl):
    samples = np.repeat(RING8[:used], 100, axis=0)
    out = synthetic_modes(samples, RING8, std=0.02)
    assert out["modes_covered"] == used
    assert out["high_quality"] == 1.0
    assert abs(out["reverse_kl"] - kl) < 1e-12


def test_synthetic_modes_quality_and_threshold():
    rng = np.random.default_rng(16)
    std = 0.02
    near = RING8[0] + rng.normal(size=(300, 2)) * std * 0.5  # well within 3 std of mode 0
    far = np.zeros((100, 2))  # the ring's centre: 2 / 0.02 = 100 std from every mode
    stray = RING8[1:2] + 4 * std  # 4 * sqrt(2) std from mode 1: not high quality
    few = np.repeat(RING8[2:3], 5, axis=0)  # 5 high-quality samples on mode 2
    out = synthetic_modes(np.concatenate([near, far, stray, few]), RING8, std=std)
    assert out["modes_covered"] == 2
    assert abs(out["high_quality"] - 305 / 406) < 1e-12
    p = np.array([300, 5]) / 305
    assert abs(out["reverse_kl"] - float(np.sum(p * np.log(p * 8)))) < 1e-12
    assert synthetic_modes(np.concatenate([near, few]), RING8, std=std, min_per_mode=20)["modes_covered"] == 1
    none = synthetic_modes(far, RING8, std=std)
    assert none["modes_covered"] == 0 and none["high_quality"] == 0.0 and math.isnan(none["reverse_kl"])


@pytest.mark.parametrize("used, kl", [(10, 0.0), (5, math.log(2)), (1, math.log(10))])
def test_class_coverage_uniform_reference(used, kl):
    labels = np.arange(1000) % used
    out = class_coverage(labels, 10)
    assert out["classes_covered"] == used and abs(out["kl"] - kl) < 1e-12


def test_class_coverage_reference_and_min_count():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    ref = np.array([0.6, 0.3, 0.1, 0.0])
    out = class_coverage(labels, 4, ref_hist=ref)
    assert out["classes_covered"] == 3 and abs(out["kl"]) < 1e-12  # matches its reference exactly
    assert class_coverage(labels, 4, min_count=3)["classes_covered"] == 2
    # generated mass where the reference has none: large but finite
    assert class_coverage(np.array([3, 3]), 4, ref_hist=ref)["kl"] > 20
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        class_coverage(np.array([4]), 4)


@pytest.mark.parametrize("modes, kl", [(1000, 0.0), (500, math.log(2)), (1, math.log(1000))])
def test_stacked_mnist_modes(modes, kl):
    ids = np.arange(2000) % modes * (1000 // modes)  # `modes` distinct triples, equally often
    out = stacked_mnist_modes(ids // 100, ids // 10 % 10, ids % 10)
    assert out["modes_covered"] == modes and abs(out["kl"] - kl) < 1e-12


def test_stacked_mnist_mode_ids_are_digit_triples():
    out = stacked_mnist_modes(np.array([1, 2]), np.array([2, 1]), np.array([3, 3]))  # 123 and 213
    assert out["modes_covered"] == 2
    with pytest.raises(ValueError):
        stacked_mnist_modes(np.array([10]), np.array([0]), np.array([0]))


def test_expected_coverage_matches_sampling_and_drops_modes_tells_one_mode_from_a_blur():
    from ganforge.metrics.prdc import drops_modes, expected_coverage

    rng = np.random.default_rng(0)
    for n_real, n_fake in ((400, 400), (400, 150)):
        sampled = np.mean([prdc(rng.normal(size=(n_real, 8)), rng.normal(size=(n_fake, 8)), k=5)["coverage"]
                           for _ in range(4)])
        assert sampled == pytest.approx(expected_coverage(n_real, n_fake, 5), abs=0.03)
    centres = rng.normal(size=(4, 8)) * 10
    real = np.concatenate([c + rng.normal(size=(100, 8)) for c in centres])
    one_mode = centres[0] + rng.normal(size=(400, 8))  # realistic, but one cluster of four
    spread = real + rng.normal(size=real.shape) * 1.5  # every cluster, all blurred
    base = expected_coverage(400, 400, 5)
    m = prdc(real, one_mode, k=5)
    assert drops_modes(m["coverage"], m["density"], base)
    m = prdc(real, spread, k=5)
    assert m["coverage"] < 0.66 * base and not drops_modes(m["coverage"], m["density"], base)  # low, but by density
    m = prdc(real, np.concatenate([c + rng.normal(size=(100, 8)) for c in centres]), k=5)
    assert not drops_modes(m["coverage"], m["density"], base)
