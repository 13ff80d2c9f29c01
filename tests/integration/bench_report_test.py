"""bench/report.py's verdicts on the throughput targets of docs/benchmarks.md.

A target is read from the run's median ratio and from each repetition's own ratio (the
variants of a repetition run back to back): met when all repetitions but one reach it, not met
when all but one miss it, "not settled" otherwise. These tests feed it repetitions of known
ratios, including the ones of a real run whose median said "met" while three of five
repetitions missed.

Run: cd tests/integration && python3 -m unittest -v bench_report_test
"""

from __future__ import annotations

import importlib.util
import os
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_report():
    spec = importlib.util.spec_from_file_location("bench_report", os.path.join(ROOT, "bench", "report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = load_report()


def runs(**rps_by_variant: list) -> dict:
    """A result file's "runs": for each variant its repetitions' req/s, None for a failed one."""
    out = {}
    for name, values in rps_by_variant.items():
        out[name.replace("_", " ")] = [
            {"rep": i, "failed": "x"} if v is None else {"rep": i, "rps": v} for i, v in enumerate(values)]
    return {"runs": out}


class PerRepetition(unittest.TestCase):
    def test_pairs_repetitions_by_number_and_skips_failed_ones(self):
        res = runs(a=[100.0, 90.0, None, 120.0], b=[50.0, None, 40.0, 60.0])
        self.assertEqual(report.per_rep(res, "a", "b"), [2.0, 2.0])

    def test_missing_variant_gives_no_ratios(self):
        self.assertEqual(report.per_rep(runs(a=[1.0]), "a", "b"), [])


class Verdict(unittest.TestCase):
    at_least_one = staticmethod(lambda v: v >= 1.0)

    def test_met_when_all_repetitions_but_one_reach_it(self):
        self.assertEqual(report.verdict(1.03, [1.05, 1.10, 0.97, 1.02, 1.04], self.at_least_one), "met")

    def test_not_met_when_all_but_one_miss_it(self):
        self.assertEqual(report.verdict(0.79, [0.92, 0.77, 0.77, 0.79, 1.01], self.at_least_one),
                         "**not met**")

    def test_a_median_that_reaches_it_with_most_repetitions_missing_is_not_settled(self):
        # Stop 17's final plain run: median ratio 1.04, repetitions 1.20, 0.84, 0.99, 0.89, 1.20.
        v = report.verdict(1.04, [1.20, 0.84, 0.99, 0.89, 1.20], self.at_least_one)
        self.assertEqual(v, "**not settled** (2 of 5 repetitions reach it)")

    def test_a_median_that_misses_with_most_repetitions_reaching_is_not_settled(self):
        v = report.verdict(0.99, [1.01, 1.02, 0.90, 0.80, 1.03], self.at_least_one)
        self.assertEqual(v, "**not settled** (3 of 5 repetitions reach it)")

    def test_fewer_than_three_repetitions_fall_back_to_the_median(self):
        self.assertEqual(report.verdict(1.01, [1.5, 0.5], self.at_least_one), "met")
        self.assertEqual(report.verdict(0.99, [], self.at_least_one), "**not met**")
        self.assertEqual(report.verdict(None, [1.0, 1.0, 1.0], self.at_least_one), "–")


class Headline(unittest.TestCase):
    def test_throughput_rows_show_the_spread_and_the_verdict(self):
        text = report.headline({"plain_vs_nginx": 1.04, "plain_vs_nginx_reps": [1.20, 0.84, 0.99, 0.89, 1.20],
                                "https_vs_squid": 3.1, "https_vs_squid_reps": [3.05, 3.2, 3.1]})
        plain = next(line for line in text.splitlines() if line.startswith("| plain, Okta path"))
        self.assertIn("1.04× (repetitions 0.84–1.20)", plain)
        self.assertIn("not settled", plain)
        https = next(line for line in text.splitlines() if line.startswith("| intercepted HTTPS"))
        self.assertIn("3.10× (repetitions 3.05–3.20)", https)
        self.assertTrue(https.endswith("| met |"), https)

    def test_a_ratio_just_below_its_target_is_not_rounded_up_to_it(self):
        text = report.headline({"plain_vs_nginx": 0.996, "plain_vs_nginx_reps": [0.99, 0.98, 1.0]})
        self.assertIn("0.996×", text)


if __name__ == "__main__":
    unittest.main()
