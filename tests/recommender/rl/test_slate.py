import numpy as np
import pytest

from recommender.rl.slate import SlateBuilder

IDS = np.array([10, 11, 12, 13, 14])
SCORES = np.array([0.1, 0.9, 0.5, 0.7, 0.3], dtype=np.float32)


def test_greedy_slate_is_the_top_k_in_order_with_propensity_one():
    slate = SlateBuilder(epsilon=0.0).build(IDS, SCORES, 3, np.random.default_rng(0))
    assert slate.items.tolist() == [11, 13, 12]
    assert slate.propensities.tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_array_equal(slate.scores, SCORES[[1, 3, 2]])


def test_greedy_ties_go_to_the_earlier_candidate():
    scores = np.array([1.0, 2.0, 0.5, 0.0, 2.0], dtype=np.float32)
    slate = SlateBuilder().build(IDS, scores, 3, np.random.default_rng(0))
    assert slate.items.tolist() == [11, 14, 10]


@pytest.mark.filterwarnings("error")
def test_read_only_scores_are_accepted():
    scores = np.broadcast_to(np.float32(1.0), (len(IDS),))  # a read-only view
    slate = SlateBuilder().build(IDS, scores, 2, np.random.default_rng(0))
    # All tied: any two make the top 2, and the earlier of them goes first.
    first, second = slate.items.tolist()
    assert first < second and {first, second} <= set(IDS.tolist())


def test_epsilon_greedy_propensities_follow_the_exact_formula():
    epsilon = 0.4
    rng = np.random.default_rng(1)
    for _ in range(200):
        slate = SlateBuilder(epsilon=epsilon).build(IDS, SCORES, 4, rng)
        assert len(set(slate.items.tolist())) == 4
        assert set(slate.items.tolist()) <= set(IDS.tolist())
        remaining = dict(zip(IDS.tolist(), SCORES.tolist(), strict=True))
        for item, propensity in zip(slate.items.tolist(), slate.propensities, strict=True):
            best = max(remaining, key=remaining.get)
            expected = (1 - epsilon) * (item == best) + epsilon / len(remaining)
            assert propensity == pytest.approx(expected)
            assert 0 < propensity <= 1
            del remaining[item]


def test_epsilon_greedy_first_slot_frequencies_match_their_propensities():
    epsilon, draws = 0.3, 20_000
    rng = np.random.default_rng(2)
    builder = SlateBuilder(epsilon=epsilon)
    counts: dict[int, int] = {}
    propensity_of: dict[int, float] = {}
    for _ in range(draws):
        slate = builder.build(IDS, SCORES, 2, rng)
        first = int(slate.items[0])
        counts[first] = counts.get(first, 0) + 1
        propensity_of[first] = slate.propensities[0]
    assert set(counts) == set(IDS.tolist())
    for item, count in counts.items():
        p = propensity_of[item]
        # Within 4 binomial standard deviations.
        assert abs(count / draws - p) < 4 * np.sqrt(p * (1 - p) / draws)


def test_softmax_first_slot_frequencies_match_their_propensities():
    temperature, draws = 0.25, 10_000
    rng = np.random.default_rng(3)
    builder = SlateBuilder(temperature=temperature)
    expected = np.exp(SCORES / temperature) / np.exp(SCORES / temperature).sum()
    positions = np.empty(draws, dtype=np.int64)
    propensities = np.empty(draws)
    for draw in range(draws):
        slate = builder.build(IDS, SCORES, 3, rng)
        positions[draw] = np.flatnonzero(slate.items[0] == IDS)[0]
        propensities[draw] = slate.propensities[0]
    np.testing.assert_allclose(propensities, expected[positions], rtol=1e-6)
    frequencies = np.bincount(positions, minlength=len(IDS)) / draws
    np.testing.assert_allclose(frequencies, expected, atol=4 * np.sqrt(0.25 / draws))


def test_softmax_later_slots_renormalise_over_the_remaining_items():
    slate = SlateBuilder(temperature=1.0).build(IDS, SCORES, 5, np.random.default_rng(4))
    remaining = list(range(len(IDS)))
    for item, propensity in zip(slate.items, slate.propensities, strict=True):
        weights = np.exp(SCORES[remaining].astype(np.float64))
        chosen = remaining.index(int(np.flatnonzero(item == IDS)[0]))
        assert propensity == pytest.approx(weights[chosen] / weights.sum())
        del remaining[chosen]
    assert slate.propensities[-1] == pytest.approx(1.0)


def test_slate_is_cut_to_the_candidates_and_empty_without_them():
    rng = np.random.default_rng(5)
    slate = SlateBuilder(epsilon=0.5).build(IDS[:2], SCORES[:2], 8, rng)
    assert sorted(slate.items.tolist()) == [10, 11]
    assert slate.propensities[-1] == pytest.approx(1.0)  # the last remaining item is certain
    empty = SlateBuilder(epsilon=0.5).build(np.array([], dtype=np.int64), np.array([]), 8, rng)
    assert empty.items.size == empty.propensities.size == empty.scores.size == 0


def test_slates_are_reproducible_from_the_seed():
    first = SlateBuilder(epsilon=0.5).build(IDS, SCORES, 4, np.random.default_rng(7))
    second = SlateBuilder(epsilon=0.5).build(IDS, SCORES, 4, np.random.default_rng(7))
    np.testing.assert_array_equal(first.items, second.items)
    np.testing.assert_array_equal(first.propensities, second.propensities)


def test_invalid_exploration_and_scores_are_rejected():
    with pytest.raises(ValueError):
        SlateBuilder(epsilon=1.5)
    with pytest.raises(ValueError):
        SlateBuilder(temperature=0.0)
    with pytest.raises(ValueError, match="finite"):
        SlateBuilder().build(IDS, np.array([0, np.nan, 0, 0, 0]), 2, np.random.default_rng(0))


# --- near-duplicate groups ------------------------------------------------------------

# 11 and 13 are near-duplicates (the two best), and so are 10 and 14.
GROUPS = np.array([1, 2, 3, 2, 1])


def test_a_grouped_slate_takes_the_best_of_each_group_in_order():
    slate = SlateBuilder().build(IDS, SCORES, 3, np.random.default_rng(0), groups=GROUPS)
    # 13 (0.7) would come second without groups; it is 11's near-duplicate.
    assert slate.items.tolist() == [11, 12, 14]
    assert slate.propensities.tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_array_equal(slate.scores, SCORES[[1, 2, 4]])


def test_a_grouped_slate_stops_when_the_groups_run_out():
    slate = SlateBuilder(epsilon=0.5).build(IDS, SCORES, 5, np.random.default_rng(0), groups=GROUPS)
    assert len(slate.items) == 3
    assert sorted(GROUPS[np.searchsorted(IDS, slate.items)].tolist()) == [1, 2, 3]


def test_grouped_greedy_looks_past_the_top_few_when_their_groups_are_taken():
    # The 40 best candidates are one product in 40 colours: the second slot
    # must come from beyond them.
    scores = np.arange(100, 0, -1, dtype=np.float32)
    groups = np.where(np.arange(100) < 40, 0, np.arange(100))
    slate = SlateBuilder().build(np.arange(100), scores, 3, np.random.default_rng(0), groups=groups)
    assert slate.items.tolist() == [0, 40, 41]


def test_grouped_greedy_is_the_stable_ranking_less_the_taken_groups():
    # Big groups at the top and many equal scores: each slot takes the first
    # eligible candidate of the full stable ranking, however deep it lies.
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 400))
        scores = rng.integers(0, 6, n).astype(np.float32)  # many ties
        groups = np.minimum(rng.integers(0, 12, n), rng.integers(0, 12, n))  # skewed sizes
        k = int(rng.integers(1, 10))
        slate = SlateBuilder().build(np.arange(n), scores, k, rng, groups=groups)
        # Any keys: sparse, negative, not integers.
        for keys in (groups * 1_000_003 - 7, groups.astype(str)):
            assert (
                SlateBuilder().build(np.arange(n), scores, k, rng, groups=keys).items.tolist()
                == slate.items.tolist()
            )
        expected, taken = [], set()
        for i in np.argsort(-scores, kind="stable").tolist():
            if len(expected) < k and groups[i] not in taken:
                expected.append(i)
                taken.add(groups[i])
        assert slate.items.tolist() == expected


def test_grouped_epsilon_greedy_propensities_are_over_the_remaining_groups():
    epsilon = 0.4
    rng = np.random.default_rng(1)
    group_of = dict(zip(IDS.tolist(), GROUPS.tolist(), strict=True))
    for _ in range(200):
        slate = SlateBuilder(epsilon=epsilon).build(IDS, SCORES, 3, rng, groups=GROUPS)
        remaining = dict(zip(IDS.tolist(), SCORES.tolist(), strict=True))
        for item, propensity in zip(slate.items.tolist(), slate.propensities, strict=True):
            assert item in remaining
            best = max(remaining, key=remaining.get)
            expected = (1 - epsilon) * (item == best) + epsilon / len(remaining)
            assert propensity == pytest.approx(expected)
            remaining = {i: s for i, s in remaining.items() if group_of[i] != group_of[item]}


@pytest.mark.parametrize("builder", [SlateBuilder(epsilon=0.3), SlateBuilder(temperature=0.5)])
def test_grouped_slate_frequencies_match_the_product_of_their_propensities(builder):
    # The logged propensities are exact: each ordered slate turns up as often as
    # the product of its per-slot propensities says.
    draws = 20_000
    rng = np.random.default_rng(2)
    counts: dict[tuple, int] = {}
    probability: dict[tuple, float] = {}
    for _ in range(draws):
        slate = builder.build(IDS, SCORES, 2, rng, groups=GROUPS)
        key = tuple(slate.items.tolist())
        assert GROUPS[np.searchsorted(IDS, key[0])] != GROUPS[np.searchsorted(IDS, key[1])]
        counts[key] = counts.get(key, 0) + 1
        probability[key] = float(np.prod(slate.propensities))
    assert sum(probability.values()) == pytest.approx(1.0)  # every possible slate was seen
    for key, count in counts.items():
        p = probability[key]
        assert abs(count / draws - p) < 4 * np.sqrt(p * (1 - p) / draws) + 1e-9


def test_groups_must_match_the_candidates():
    with pytest.raises(ValueError, match="groups"):
        SlateBuilder().build(IDS, SCORES, 2, np.random.default_rng(0), groups=GROUPS[:3])
