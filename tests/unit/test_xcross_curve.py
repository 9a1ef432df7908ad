"""benchmarks/xcross_curve.py: early stopping on validation keeps the best state (step 0 included)."""

from __future__ import annotations

import numpy as np
import torch
from tests.scripts import load_script


def _curve():
    return load_script("benchmarks/xcross_curve.py")


class Toy(torch.nn.Module):
    """One trainable weight pulled to 1 by the loss, one frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.frozen = torch.nn.Parameter(torch.ones(1), requires_grad=False)

    def loss(self, batch) -> torch.Tensor:
        return ((self.w - 1.0) ** 2).sum() + 0.0 * batch.items.float().sum()


def _run(val_every: int, scores: list[float]):
    xc = _curve()
    args = xc.parse(["--json", "x.json", "--lr", "0.1", "--batch-size", "2", "--max-len", "3",
                     "--val-every", str(val_every)])
    exs = [([1, 2], 3)] * 8  # 4 steps of 2
    seen: list[torch.Tensor] = []

    def validate(model: Toy) -> float:
        seen.append(model.w.detach().clone())
        return scores[len(seen) - 1]

    model = Toy()
    secs, log = xc.train(model, exs, args, 1, np.array([-1, 0, 0, 0]), "toy", validate)
    return model, seen, log, secs


def test_early_stopping_restores_the_best_validated_state():
    # checks at steps 0, 2, 4 (every 2 steps; 4 is also the end): the middle one is best
    model, seen, log, secs = _run(2, [0.1, 0.3, 0.2])
    assert [e["step"] for e in log[:-1]] == [0, 2, 4] and log[-1] == {"chosen_step": 2, "ndcg@10": 0.3}
    assert not torch.equal(seen[1], seen[2]) and not torch.equal(seen[0], seen[1])  # training moved w
    assert torch.equal(model.w.detach(), seen[1])
    assert len(secs) == 1 and model.frozen.item() == 1.0


def test_step_zero_wins_unless_training_improves_validation():
    model, seen, log, _ = _run(2, [0.3, 0.3, 0.1])  # a tie with step 0 keeps step 0
    assert log[-1]["chosen_step"] == 0 and torch.equal(model.w.detach(), torch.zeros(2))


def test_without_validation_the_last_state_is_kept():
    model, seen, log, _ = _run(0, [])
    assert seen == [] and log == []
    assert (model.w.detach() > 0.1).all()  # four Adam steps of 0.1 towards 1


def test_domain_only_scores_the_domain_s_queries_on_its_own_items():
    from mosaicrec.data.batches import SeqBatch

    xc = _curve()
    item_domain = np.array([-1, 0, 1, 0, 1, 1])  # item 0 = padding; domain 0 = items 1, 3
    got: list[SeqBatch] = []

    class Spy:
        training = True

        def eval(self):
            self.training = False

        def train(self, mode=True):
            self.training = mode

        def score(self, b):
            got.append(b)
            return torch.ones(len(b), 6)

    items = torch.tensor([[0, 1, 2, 3], [0, 0, 2, 4], [2, 1, 4, 3], [0, 0, 1, 3]])  # [B=4, L=4] left-padded
    batch = SeqBatch(items=items, domains=torch.zeros_like(items), lengths=(items != 0).sum(1),
                     users=torch.arange(4), targets=torch.tensor([3, 1, 1, 2]),
                     target_domains=torch.tensor([0, 0, 0, 1]))
    wrapped = xc.DomainOnly(Spy(), 0, item_domain)
    out = wrapped.score(batch)
    assert out.shape == (4, 6) and out[:3].eq(1).all() and out[3].eq(0).all()  # domain 1 row: not scored
    (sub,) = got
    # row 0 keeps items 1, 3; row 1 has no domain-0 item and stays as it was; row 2 keeps 1, 3
    assert sub.items.tolist() == [[0, 0, 1, 3], [0, 0, 2, 4], [0, 0, 1, 3]]
    assert sub.lengths.tolist() == [2, 2, 2] and sub.users.tolist() == [0, 1, 2]
    assert sub.domains.tolist() == [[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    assert wrapped.unfiltered == 1
    wrapped.eval()
    assert wrapped.training is False


def test_step_zero_validation_is_memoised_across_runs_of_one_initial_model():
    xc = _curve()
    args = xc.parse(["--json", "x.json", "--lr", "0.1", "--batch-size", "2", "--max-len", "3", "--val-every", "2"])
    calls: list[int] = []

    def validate(model: Toy) -> float:
        calls.append(1)
        return 0.5 if len(calls) == 1 else 0.1

    memo: dict[str, float] = {}
    _, log1 = xc.train(Toy(), [([1, 2], 3)] * 4, args, 1, np.array([-1, 0, 0, 0]), "a", validate, memo)
    _, log2 = xc.train(Toy(), [([1, 2], 3)] * 4, args, 1, np.array([-1, 0, 0, 0]), "b", validate, memo)
    assert memo == {"ndcg@10": 0.5} and len(calls) == 3  # step 0 once, step 2 in each run
    assert log2[0]["ndcg@10"] == 0.5 and log2[-1]["chosen_step"] == 0
