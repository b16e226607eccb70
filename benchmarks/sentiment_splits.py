"""How much of the sentiment result is the luck of one split? Refit and re-test per seed.

For each seed, the whole fit of ``fit_lexicon.py`` (lexicon, compound thresholds, flag
model) runs on that seed's training split of ``tests/fixtures/sentiment`` and both
classifiers are measured on its test split. It prints one line per seed and data set, then
the range over seeds of what the acceptance asks for: the negative-flag recall ratio against
plain VADER (at ``compound <= -0.5``) and the precision difference, on the Amazon review
snippets, the tweets and both together, and the tweets' correlation.

    .venv/bin/python benchmarks/sentiment_splits.py                # seeds 1-6 and 7
    .venv/bin/python benchmarks/sentiment_splits.py --seeds 7 11   # chosen seeds

About 1.5 minutes per seed on this machine (each of the 4 folds refits the lexicon and both heads).
Nothing here is written to the repository.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from earshot.listener.evaluation import evaluate, load_examples, split_examples
from earshot.listener.sentiment import VaderClassifier

HERE = Path(__file__).resolve().parent


def _fit_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fit_lexicon", HERE / "fit_lexicon.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7])
    parser.add_argument("--margin", type=float, default=1.0, help="as in fit_lexicon.py")
    args = parser.parse_args(argv)
    fit = _fit_module()
    files = {name: load_examples(fit.DATA / name) for name in fit.FILES}
    lexicon_options = {"rounds": 6, "shrink": 6.0, "min_count": 5, "min_weight": 0.4}
    flag_options = {"min_count": 3, "l2": 3.0, "folds": 4, "margin": args.margin}
    seen: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    for seed in args.seeds:
        train = [e for ex in files.values() for e in split_examples(ex, "train", seed=seed)]
        test = {name[:6]: split_examples(ex, "test", seed=seed) for name, ex in files.items()}
        test["both"] = test["amazon"] + test["tweets"]
        ours = fit.fit_all(train, lexicon_options, flag_options).classifier()
        for name, examples in test.items():
            vader, exp = evaluate(examples, [("vader", VaderClassifier()), ("ours", ours)]).rows
            ratio = exp.negative_recall / vader.negative_recall
            dp = (exp.negative_precision - vader.negative_precision) * 100
            df1 = (exp.macro_f1 - vader.macro_f1) * 100
            r = exp.pearson_r or 0.0
            seen[name].append((ratio, dp, df1, r))
            print(
                f"seed {seed:>2} {name:<6} neg recall {vader.negative_recall:6.1%} -> "
                f"{exp.negative_recall:6.1%} (x{ratio:.2f}), precision "
                f"{vader.negative_precision:6.1%} -> {exp.negative_precision:6.1%} "
                f"({dp:+.1f}), macro-F1 {df1:+.1f}, r {vader.pearson_r:.3f} -> {r:.3f}",
                flush=True,
            )
    print(f"\nover {len(args.seeds)} seeds (min / median / max):")
    for name, rows in seen.items():
        cols = list(zip(*rows, strict=True))

        def span(values: Sequence[float], fmt: str) -> str:
            ordered = sorted(values)
            mid = ordered[len(ordered) // 2]
            return " / ".join(format(v, fmt) for v in (ordered[0], mid, ordered[-1]))

        print(
            f"  {name:<6} recall ratio {span(cols[0], '.2f')}; precision diff "
            f"{span(cols[1], '+.1f')} pts; macro-F1 diff {span(cols[2], '+.1f')} pts; "
            f"r {span(cols[3], '.3f')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
