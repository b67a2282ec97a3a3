import numpy as np
import pytest

from seglab.models.star_geometry import (
    fill_label_holes,
    intersection_area,
    polygon_areas,
    polygon_coords,
    polygon_nms,
    radial_distances,
    ray_directions,
)


def _disc_labels(shape=(80, 90), centre=(40, 45), radius=15.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) <= radius**2).astype(np.int32)


def _square(y, x, size):
    return np.array([[y, x], [y, x + size], [y + size, x + size], [y + size, x]], dtype=np.float64)


@pytest.mark.parametrize("radius", [6.0, 15.0, 30.0])
def test_radial_distances_at_disc_centre_match_the_radius(radius):
    lab = _disc_labels(shape=(100, 100), centre=(50, 50), radius=radius)
    d = radial_distances(lab, 32)
    assert d.shape == (32, 100, 100)
    # the digital disc's boundary lies within a pixel of the radius on every ray
    np.testing.assert_allclose(d[:, 50, 50], radius, atol=1.0)
    assert np.all(d[:, lab == 0] == 0)


def test_radial_distances_off_centre_and_subsampled():
    lab = _disc_labels(shape=(100, 100), centre=(50, 50), radius=20)
    d = radial_distances(lab, 4, stride=2)
    assert d.shape == (4, 50, 50)
    # from (50, 60): rays along +x, +y, -x, -y reach the circle at 10, ~17.3, 30, ~17.3
    np.testing.assert_allclose(d[:, 25, 30], [10, np.sqrt(400 - 100), 30, np.sqrt(400 - 100)], atol=1.0)


def test_radial_distances_stop_at_a_touching_neighbour():
    lab = np.zeros((20, 40), dtype=np.int32)
    lab[5:15, 5:20] = 1
    lab[5:15, 20:35] = 2
    d = radial_distances(lab, 4)
    assert abs(d[0, 10, 10] - 9.5) <= 0.5  # +x: boundary with object 2 at x = 19.5
    assert abs(d[2, 10, 25] - 5.5) <= 0.5  # -x from object 2


def test_fill_label_holes_fills_only_holes():
    lab = np.zeros((30, 30), dtype=np.int32)
    lab[5:20, 5:20] = 1
    lab[10:13, 10:13] = 0  # a hole
    lab[25:28, 2:5] = 2
    out = fill_label_holes(lab)
    assert np.all(out[10:13, 10:13] == 1)
    assert np.array_equal(out[lab != 0], lab[lab != 0])
    assert (out == 0).sum() == (lab == 0).sum() - 9


def test_polygon_coords_and_areas():
    pts = np.array([[10.0, 20.0]])
    coords = polygon_coords(pts, np.full((1, 4), 5.0))
    np.testing.assert_allclose(coords[0], [[10, 25], [15, 20], [10, 15], [5, 20]], atol=1e-9)
    assert polygon_areas(coords)[0] == pytest.approx(50.0)  # a square of diagonal 10
    circle = polygon_coords(pts, np.full((1, 256), 10.0))
    assert polygon_areas(circle)[0] == pytest.approx(np.pi * 100, rel=1e-3)
    np.testing.assert_allclose(np.linalg.norm(ray_directions(7), axis=1), 1.0)


def test_intersection_area_hand_computed_cases():
    a = _square(0, 0, 10)
    assert intersection_area(a, a) == pytest.approx(100)
    assert intersection_area(a, _square(0, 5, 10)) == pytest.approx(50)
    assert intersection_area(a, _square(5, 5, 10)) == pytest.approx(25)
    assert intersection_area(a, _square(0, 10, 10)) == pytest.approx(0)  # touching edge
    assert intersection_area(a, _square(20, 20, 5)) == 0
    assert intersection_area(a, _square(2, 2, 3)) == pytest.approx(9)  # inside


def test_intersection_area_of_non_convex_star_polygons_is_exact():
    """L-shaped overlap: a non-convex polygon against a square, computed by hand."""
    l_shape = np.array([[0, 0], [0, 10], [5, 10], [5, 5], [10, 5], [10, 0]], dtype=np.float64)
    # same orientation as the squares above? orient consistently first
    sq = _square(0, 0, 10)
    if np.sign(_signed_area(l_shape)) != np.sign(_signed_area(sq)):
        l_shape = l_shape[::-1].copy()
    assert intersection_area(l_shape, sq) == pytest.approx(75)
    assert intersection_area(l_shape, _square(6, 6, 4)) == pytest.approx(0)
    assert intersection_area(l_shape, _square(4, 4, 4)) == pytest.approx(4 * 4 - 3 * 3)


def _signed_area(p):
    y, x = p[:, 0], p[:, 1]
    return 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)


def _brute_force_nms(coords, scores, thresh):
    order = np.argsort(-scores, kind="stable")
    areas = polygon_areas(coords)
    keep = []
    for i in order:
        if all(intersection_area(coords[i], coords[k]) / min(areas[i], areas[k]) <= thresh for k in keep):
            keep.append(i)
    return np.array(keep)


def test_nms_suppresses_overlapping_keeps_touching_and_best_first():
    pts = np.array([[20.0, 20.0], [21.0, 22.0], [20.0, 40.0], [60.0, 60.0]])
    d = np.full((4, 16), 9.5)
    d[2] = 10.0  # touches polygon 0 (centres 20 apart, radii 9.5 + 10 < 20): no overlap
    coords = polygon_coords(pts, d)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    keep = polygon_nms(coords, scores, 0.3)
    assert list(keep) == [1, 2, 3]  # 0 overlaps the better 1; 2 and 3 are separate


def test_nms_threshold_is_the_overlap_over_the_smaller_area():
    a, b = _square(0, 0, 10), _square(0, 6, 10)  # overlap 40 of 100
    coords = np.stack([a, b])
    scores = np.array([1.0, 0.5])
    assert list(polygon_nms(coords, scores, 0.39)) == [0]
    assert list(polygon_nms(coords, scores, 0.41)) == [0, 1]


def test_nms_matches_brute_force_on_many_random_candidates():
    rng = np.random.default_rng(3)
    n = 600
    pts = rng.uniform(0, 200, (n, 2))
    dists = rng.uniform(3, 12, (n, 16))
    coords = polygon_coords(pts, dists)
    scores = rng.random(n)
    fast = polygon_nms(coords, scores, 0.3)
    np.testing.assert_array_equal(fast, _brute_force_nms(coords, scores, 0.3))


def test_nms_of_nothing():
    assert polygon_nms(np.zeros((0, 8, 2)), np.zeros(0), 0.4).size == 0


def test_intersection_area_agrees_with_shapely_on_random_star_polygons():
    shapely = pytest.importorskip("shapely")
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = polygon_coords(rng.uniform(0, 20, (1, 2)), rng.uniform(2, 12, (1, 32)))[0]
        b = polygon_coords(rng.uniform(0, 20, (1, 2)), rng.uniform(2, 12, (1, 32)))[0]
        expected = shapely.Polygon(a).intersection(shapely.Polygon(b)).area
        assert intersection_area(a, b) == pytest.approx(expected, abs=1e-9)


def test_render_polygons_matches_pixel_centre_rule_of_skimage():
    from skimage.draw import polygon as draw_polygon

    from seglab.models.star_geometry import render_polygons

    rng = np.random.default_rng(1)
    coords = polygon_coords(rng.uniform(0, 100, (80, 2)), rng.uniform(2, 12, (80, 16)))
    expected = np.zeros((100, 100), dtype=np.int32)
    for i in range(len(coords) - 1, -1, -1):  # worst first, so the best ends on top
        rr, cc = draw_polygon(coords[i, :, 0], coords[i, :, 1], (100, 100))
        expected[rr, cc] = i + 1
    np.testing.assert_array_equal(render_polygons(coords, (100, 100)), expected)


def test_nms_with_disc_bounds_decides_exactly_as_without():
    """The inscribed-disc shortcut only saves work: same kept set as the exact test alone."""
    rng = np.random.default_rng(5)
    n = 800
    pts = rng.uniform(0, 150, (n, 2))
    dists = rng.uniform(3, 12, (n, 32))
    coords = polygon_coords(pts, dists)
    scores = rng.random(n)
    for thresh in (0.1, 0.4, 0.7):
        np.testing.assert_array_equal(polygon_nms(coords, scores, thresh, pts, dists),
                                      polygon_nms(coords, scores, thresh))


def test_inscribed_disc_is_inside_the_star_polygon():
    """The lower bound's premise: the disc of radius min(d) cos(pi/n) lies inside the polygon."""
    from seglab.models.star_geometry import _inside

    rng = np.random.default_rng(6)
    for _ in range(50):
        d = rng.uniform(2, 10, 12)
        poly = polygon_coords(np.zeros((1, 2)), d[None])[0]
        r = d.min() * np.cos(np.pi / 12) * 0.999
        phi = np.linspace(0, 2 * np.pi, 200)
        assert all(_inside(r * np.sin(p), r * np.cos(p), poly) for p in phi)


def _clustered_candidates(seed: int, n_objects: int = 40, per_object: int = 25, n_rays: int = 32):
    """Candidates as a probability map gives them: many per object, centres a few pixels apart,
    rays of the same object's shape with noise (elongated and irregular objects among them)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 300, (n_objects, 2))
    phi = 2 * np.pi * np.arange(n_rays) / n_rays
    pts, dists = [], []
    for c in centres:
        r, e, turn = rng.uniform(4, 15), rng.uniform(1.0, 2.2), rng.uniform(0, np.pi)
        shape = r / np.sqrt(np.cos(phi - turn) ** 2 + (e * np.sin(phi - turn)) ** 2)
        for _ in range(per_object):
            pts.append(c + rng.normal(0, 0.25 * r, 2))
            dists.append(np.maximum(shape * np.exp(rng.normal(0, 0.15, n_rays)), 0.5))
    return np.array(pts), np.array(dists)


def test_star_overlap_area_is_the_exact_intersection_when_the_centre_sees_both():
    from seglab.models.star_geometry import star_overlap_area

    pts, dists = _clustered_candidates(0, n_objects=20, per_object=10)
    coords = polygon_coords(pts, dists)
    rng = np.random.default_rng(1)
    swept = 0
    for _ in range(400):
        i, j = rng.integers(0, len(pts), 2)
        if rng.random() < 0.7:  # mostly pairs of one object
            j = i // 10 * 10 + rng.integers(0, 10)
        got = star_overlap_area(coords[i], coords[j], pts[i, 0], pts[i, 1])
        if got >= 0:
            swept += 1
            assert got == pytest.approx(intersection_area(coords[i], coords[j]), rel=1e-9, abs=1e-9)
    assert swept > 80  # the sweep applies to many pairs of one object (124 of these 400)
    # a centre outside the other polygon is outside its kernel: not decided here
    far = polygon_coords(np.array([[0.0, 0.0], [100.0, 100.0]]), np.full((2, 32), 5.0))
    assert star_overlap_area(far[0], far[1], 0.0, 0.0) == -1.0
    # a centre inside a non-convex polygon but not seeing all of it: not decided either
    notch = np.full(32, 10.0)
    notch[8] = 1.0  # a deep notch: points behind it are hidden from (0, 5)
    star = polygon_coords(np.zeros((1, 2)), notch[None])[0]
    disc = polygon_coords(np.array([[5.0, 0.0]]), np.full((1, 32), 3.0))[0]
    assert star_overlap_area(disc, star, 5.0, 0.0) == -1.0


def test_direction_key_orders_directions_as_their_angle():
    from seglab.models.star_geometry import _direction_key

    rng = np.random.default_rng(3)
    angles = np.concatenate([np.arange(16) * np.pi / 8, rng.uniform(0, 2 * np.pi, 500)])  # the axes too
    radii = rng.uniform(1e-3, 1e3, len(angles))
    keys = np.array([_direction_key(r * np.cos(t), r * np.sin(t)) for r, t in zip(radii, angles)])
    assert keys.min() >= 0.0 and keys.max() < 4.0
    by_angle = np.argsort(angles, kind="stable")
    assert np.all(np.diff(keys[by_angle]) > 0)  # strictly increasing: the same order as the angles
    # the four axes land on 0, 1, 2, 3 whatever the length
    for k, (x, y) in enumerate([(2.0, 0.0), (0.0, 0.5), (-7.0, 0.0), (0.0, -3.0)]):
        assert _direction_key(x, y) == k


def test_bounding_boxes_are_the_polygons_extremes():
    from seglab.models.star_geometry import _bounding_boxes

    pts, dists = _clustered_candidates(5, n_objects=6, per_object=5)
    coords = np.ascontiguousarray(polygon_coords(pts, dists))
    ys, xs = coords[..., 0], coords[..., 1]
    want = np.stack([ys.min(axis=1), xs.min(axis=1), ys.max(axis=1), xs.max(axis=1)], axis=1)
    assert np.array_equal(_bounding_boxes(coords), want)


def test_nms_of_clustered_candidates_decides_exactly_as_the_edge_pairs_alone():
    """Candidates as a probability map gives them (many per object): the sweep, the bounds and
    the plain edge-pair overlap keep the same polygons."""
    for seed in (2, 3):
        pts, dists = _clustered_candidates(seed)
        coords = polygon_coords(pts, dists)
        scores = np.random.default_rng(seed).random(len(pts))
        for thresh in (0.2, 0.4, 0.7):
            fast = polygon_nms(coords, scores, thresh, pts, dists)
            np.testing.assert_array_equal(fast, polygon_nms(coords, scores, thresh))
            assert 10 < len(fast) < len(pts) / 3
