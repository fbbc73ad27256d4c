"""bench.analysis.planning: the paired t-test's power against scipy's noncentral t (and a simulation), and the seeds a
difference needs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.analysis import paired, planning
from conftest import cycles_frame


def test_paired_t_power_matches_a_direct_computation():
    effect, sd, n = 0.01, 0.012, 8
    df, nc = n - 1, effect / sd * math.sqrt(n)
    t_crit = sps.t.ppf(0.975, df)
    direct = 1 - sps.nct.cdf(t_crit, df, nc) + sps.nct.cdf(-t_crit, df, nc)
    assert planning.paired_t_power(effect, sd, n) == pytest.approx(direct, rel=1e-10)
    # With no true difference the power is the size of the test.
    assert planning.paired_t_power(0.0, sd, n) == pytest.approx(0.05, rel=1e-10)
    # Monte Carlo check of the formula: simulated paired t-tests reject about `direct` of the time.
    rng = np.random.default_rng(1)
    samples = rng.normal(effect, sd, size=(20000, n))
    rejected = np.mean(sps.ttest_1samp(samples, 0, axis=1).pvalue < 0.05)
    assert rejected == pytest.approx(direct, abs=0.015)


def test_seeds_needed_is_the_first_n_reaching_80_percent():
    sd = 0.008
    n = planning.seeds_needed(0.005, sd)
    assert planning.paired_t_power(0.005, sd, int(n)) >= 0.8 > planning.paired_t_power(0.005, sd, int(n) - 1)
    assert planning.seeds_needed(0.01, sd) <= n  # a larger effect never needs more seeds
    assert math.isnan(planning.seeds_needed(0.01, 1.0))  # more than MAX_PLANNED_SEEDS


def test_seed_planning_uses_the_observed_aulc_spread():
    base = {s: [0.5 + 0.01 * s, 0.6 + 0.01 * s] for s in range(5)}
    gain = [0.01, 0.02, 0.00, 0.015, 0.03]
    curves = {("random", s): acc for s, acc in base.items()}
    curves |= {("al", s): [base[s][0] + gain[s], base[s][1] + gain[s]] for s in range(5)}
    planned = planning.seed_planning(paired.compare_to_baseline(cycles_frame(curves, [100, 200]))).iloc[0]
    sd = np.std(gain, ddof=1)
    assert planned["sd_diff"] == pytest.approx(sd) and planned["n_pairs"] == 5
    for column, effect in (("seeds_1pt", 0.01), ("seeds_half_pt", 0.005)):
        n = int(planned[column])
        power = [1 - sps.nct.cdf(sps.t.ppf(0.975, k - 1), k - 1, effect / sd * math.sqrt(k))
                 + sps.nct.cdf(-sps.t.ppf(0.975, k - 1), k - 1, effect / sd * math.sqrt(k)) for k in (n - 1, n)]
        assert power[0] < 0.8 <= power[1]


def test_power_is_monotone_on_a_tight_spread():
    # badge vs random on a 40k CIFAR-10 slice: paired sd 0.12 points; scipy's nct.cdf is NaN far in the lower tail
    sd = 0.0012
    for effect in (0.005, 0.01, 0.02):
        powers = [planning.paired_t_power(effect, sd, n) for n in range(2, 30)]
        assert all(np.isfinite(powers)) and all(b >= a for a, b in zip(powers, powers[1:], strict=False))
    for n in range(2, 30):
        by_effect = [planning.paired_t_power(e, sd, n) for e in (0.001, 0.002, 0.005, 0.01, 0.02)]
        assert all(b >= a for a, b in zip(by_effect, by_effect[1:], strict=False))
    assert planning.seeds_needed(0.01, sd) <= planning.seeds_needed(0.005, sd) == 3


@pytest.mark.parametrize("sd", [0.004, 0.02, 0.05, 0.09, 0.1, 1.0])  # answers in each window, and none
def test_seeds_needed_is_the_first_n_of_the_whole_range(sd):
    n = np.arange(2, planning.MAX_PLANNED_SEEDS + 1)
    enough = np.flatnonzero(planning._powers(0.01, sd, n, paired.ALPHA) >= planning.POWER)
    expected = float(n[enough[0]]) if enough.size else math.nan
    assert planning.seeds_needed(0.01, sd) == pytest.approx(expected, nan_ok=True)
