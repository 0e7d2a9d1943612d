import numpy as np
import pytest

from stackctl.demo.data import TenantSpec, generate
from workers.exceptions import QualityGateError
from workers.training.als import AlsParams, train_and_evaluate

FAST = AlsParams(factors=32, iterations=8)


def test_als_beats_popularity_on_structured_data(small_tenant, arrays_of):
    embeddings, metrics = train_and_evaluate(arrays_of(small_tenant), FAST)
    assert metrics["als"]["ndcg_at_10"] > metrics["popularity"]["ndcg_at_10"]
    assert metrics["ndcg_lift"] > 0.2
    assert embeddings.item_factors.shape == (len(embeddings.item_ids), 32)
    assert embeddings.user_factors.dtype == np.float32


def test_a_model_that_does_not_beat_popularity_is_refused(end_us, arrays_of):
    """When every interaction follows global popularity, popularity is the best model there is."""
    data = generate(TenantSpec("flat", 1500, 600, 30_000, popular_share=1.0, seed=4), end_us)
    with pytest.raises(QualityGateError, match="does not beat popularity"):
        train_and_evaluate(arrays_of(data), FAST)
