"""The customer-experience lexicon: hand-set prior weights, before fitting.

Weights are on VADER's scale (-4 … +4, the mean rating a human gives the word alone).
``benchmarks/fit_lexicon.py`` starts from these priors, moves each one towards what the
training split says (a shrunken mean, so a word seen twice barely moves) and adds the
words the training split shows VADER is missing; the result is ``lexicon_fitted.py``,
which is what the classifier loads. Words missing from the training data keep their prior.

Multi-word entries (``"charged twice"``) are phrase rules: the classifier joins the words
with ``_`` before VADER reads the text, so VADER sees one token and still applies its own
negation, booster, caps and "but" rules to it.
"""

from __future__ import annotations

#: Complaints: failures, money, waiting, leaving.
NEGATIVE_PRIORS: dict[str, float] = {
    # failures
    "crash": -2.0,
    "crashes": -2.0,
    "crashed": -2.0,
    "crashing": -2.0,
    "bug": -1.5,
    "bugs": -1.5,
    "buggy": -2.0,
    "glitch": -1.5,
    "glitches": -1.5,
    "glitchy": -1.8,
    "outage": -2.0,
    "outages": -2.0,
    "downtime": -1.8,
    "unusable": -2.5,
    "unresponsive": -1.8,
    "laggy": -1.8,
    "lags": -1.5,
    "lagging": -1.5,
    "slow": -1.2,
    "slower": -1.0,
    "sluggish": -1.7,
    "freezes": -1.8,
    "freezing": -1.5,
    "froze": -1.8,
    "frozen": -1.2,
    "hangs": -1.5,
    "stopped working": -2.2,
    "doesn't work": -2.0,
    "does not work": -2.0,
    "won't load": -2.0,
    "not loading": -1.8,
    "keeps crashing": -2.5,
    "error message": -1.5,
    "data loss": -2.5,
    "lost my data": -2.5,
    "malfunction": -2.0,
    "malfunctions": -2.0,
    "defect": -1.8,
    "defects": -1.8,
    "faulty": -2.0,
    "flimsy": -1.5,
    "overheats": -1.8,
    "overheating": -1.8,
    "drains": -1.2,
    "battery drain": -1.8,
    "dead pixels": -1.8,
    "junk": -2.2,
    "garbage": -2.2,
    "ripoff": -2.5,
    "rip-off": -2.5,
    "rip off": -2.5,
    "lemon": -1.2,
    "returned it": -1.8,
    "returning it": -1.8,
    "sent it back": -1.8,
    # money
    "refund": -1.5,
    "refunds": -1.2,
    "refunded": -0.8,
    "overcharged": -2.2,
    "charged twice": -2.3,
    "double charged": -2.3,
    "hidden fees": -2.0,
    "money back": -1.5,
    "chargeback": -2.0,
    # support and waiting
    "on hold": -1.5,
    "no response": -1.8,
    "no reply": -1.5,
    "still waiting": -1.8,
    "never received": -2.0,
    "never arrived": -2.0,
    "never again": -2.2,
    "customer service": -0.3,
    # leaving
    "cancel my subscription": -2.0,
    "cancelled my subscription": -2.0,
    "canceled my subscription": -2.0,
    "cancel my account": -2.0,
    "unsubscribe": -1.2,
    "switching to": -1.0,
    "uninstalled": -1.8,
    "uninstall": -1.5,
    "deleted the app": -1.8,
    "waste of money": -2.5,
    "waste of time": -2.3,
}

#: Praise: things that just work.
POSITIVE_PRIORS: dict[str, float] = {
    "seamless": 2.0,
    "seamlessly": 2.0,
    "intuitive": 2.0,
    "reliable": 1.8,
    "reliably": 1.5,
    "lifesaver": 2.8,
    "life saver": 2.8,
    "game changer": 2.5,
    "game-changer": 2.5,
    "user-friendly": 1.8,
    "user friendly": 1.8,
    "snappy": 1.5,
    "responsive": 1.5,
    "smooth": 1.3,
    "smoothly": 1.3,
    "fast": 1.0,
    "quick": 0.8,
    "quickly": 0.8,
    "effortless": 1.8,
    "painless": 1.5,
    "sturdy": 1.3,
    "crisp": 1.2,
    "works great": 2.5,
    "works perfectly": 2.8,
    "works well": 2.0,
    "highly recommend": 2.8,
    "well worth": 2.0,
    "worth every penny": 2.8,
    "five stars": 2.5,
    "5 stars": 2.5,
    "fixed it": 1.2,
    "resolved": 1.2,
}

#: Both directions together.
PRIORS: dict[str, float] = {**NEGATIVE_PRIORS, **POSITIVE_PRIORS}

#: Never fitted as new words: function words, VADER's negations and boosters are handled by
#: VADER's rules, and a weight on them would double count.
STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your
    yours yourself yourselves also get got one two use used using i'm it's i've don't
    didn't doesn't isn't wasn't can't won't couldn't wouldn't shouldn't aren't haven't
    hasn't hadn't weren't cannot never without nothing nobody none neither nowhere ain't
    much many even still yet really quite rather s t d ll ve re m
    """.split()  # noqa: SIM905 - a word list reads better as text
)
