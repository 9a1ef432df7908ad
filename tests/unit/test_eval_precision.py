"""Evaluation precision: bf16 autocast reaches the model's forward; SASRec's eval-mode scores
(through the faster serve_repr path) equal user_repr @ item_vectors; bf16 metrics stay close."""

from __future__ import annotations

import numpy as np
import torch
from tests.unit.test_ranking import TableModel, cfg, make_data

from mosaicrec.data.batches import SeqBatch
from mosaicrec.evaluation.ranking import Evaluator
from mosaicrec.models.base import ModelContext
from mosaicrec.registry import MODELS


class DtypeProbe(TableModel):
    def score(self, batch: SeqBatch) -> torch.Tensor:
        self.seen_dtype = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        return super().score(batch)


def _data(tmp_path, n_users: int = 40, n_items: int = 25, length: int = 12):
    rng = np.random.default_rng(0)
    users = [[(int(i), "train") for i in rng.integers(1, n_items + 1, length - 1)] + [(int(rng.integers(1, n_items + 1)), "test")]
             for _ in range(n_users)]
    return make_data(tmp_path, users, [0] * n_items, ["A"])


def test_bf16_autocast_is_active_only_when_asked(tmp_path):
    data = _data(tmp_path)
    for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        model = DtypeProbe(np.random.default_rng(1).random((40, 26)))
        Evaluator(data, cfg(precision=precision), "test", 12).evaluate(model)
        assert model.seen_dtype == dtype


def test_sasrec_eval_scores_and_bf16_metrics(tmp_path):
    data = _data(tmp_path)
    ctx = ModelContext(n_items=25, n_users=40, n_domains=1, item_domain=np.zeros(26, np.int8), max_len=12)
    cls = MODELS.get("sasrec")
    torch.manual_seed(0)
    model = cls(cls.Config(hidden=16, layers=2, heads=2, dropout=0.1), ctx).eval()
    ev = Evaluator(data, cfg(), "test", 12)
    batch = ev.batch(np.arange(40))
    with torch.no_grad():
        torch.testing.assert_close(model.score(batch), model.user_repr(batch) @ model.item_vectors().T,
                                   rtol=1e-5, atol=1e-5)
    fp32 = ev.evaluate(model).metrics["overall"]
    bf16 = Evaluator(data, cfg(precision="bfloat16"), "test", 12).evaluate(model).metrics["overall"]
    assert fp32.keys() == bf16.keys()
    for k in fp32:
        assert abs(fp32[k] - bf16[k]) <= 0.05, (k, fp32[k], bf16[k])
