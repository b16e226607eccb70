"""What the long-running process carries: heavy modules stay out until something needs them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from earshot.listener import embedding


def test_the_wired_service_does_not_import_alembic_or_the_store_crypto() -> None:
    """Alembic (about 11 MB) loads only to migrate; PyJWT and cryptography (about 10 MB) only
    for the App Store Connect and Google Play sources' keys."""
    code = (
        "import sys\n"
        "import earshot.config.wiring, earshot.listener.sources\n"
        "loaded = [m for m in ('alembic', 'jwt', 'cryptography') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]


def test_embed_many_in_batches_equals_one_text_at_a_time() -> None:
    texts = [
        f"review {i}: the app {'crashes' if i % 2 else 'works'} on page {i}" for i in range(150)
    ]
    assert len(texts) > 2 * embedding.BATCH
    many = embedding.embed_many(texts)
    one = np.stack([embedding.embed(text) for text in texts])
    assert many.shape == (150, embedding.DIM)
    np.testing.assert_allclose(many, one, rtol=1e-6, atol=1e-6)


def test_mention_defaults_are_new_containers_each_time() -> None:
    """The named factories (``new_dict``/``new_list``, cheaper than ``dict``/``list``) still give
    each instance its own container."""
    from earshot.listener.models import Mention, utcnow

    def mention(eid: str) -> Mention:
        return Mention(source="hackernews", external_id=eid, text="t", created_at=utcnow())

    a, b = mention("1"), mention("2")
    a.raw["k"] = 1
    a.intents.append("bug")
    a.sentiment_reasons.append("why")
    assert (b.raw, b.intents, b.sentiment_reasons) == ({}, [], [])
