"""Training-dynamics proxies against counts made by hand on a scripted run of 5 epochs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memlab.studies.training_dynamics import dynamics_columns, dynamics_scores

# per instance, its correctness at epochs 0..4
CORRECT = {10: [1, 0, 1, 1, 0],   # forgotten twice, wrong at the end
           11: [0, 0, 1, 1, 1],   # learned at epoch 2, never forgotten
           12: [0, 0, 0, 0, 0],   # never learned
           13: [1, 1, 1, 1, 1],   # always right
           14: [1, 0, 0, 1, 1]}   # forgotten once, learned for good at epoch 3
# instance 10's logits at each epoch, label 0, three classes: margin z_0 - max(z_1, z_2)
LOGITS_10 = [[2.0, 0.5, 1.0], [0.0, 1.5, -1.0], [3.0, 0.0, 2.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]
MARGINS_10 = [1.0, -1.5, 1.0, 1.0, -2.0]  # by hand
# instance 10's softmax at epoch 1 (given): EL2N = ||p - onehot(0)||
PROBS_10_EPOCH1 = [0.2, 0.7, 0.1]
EL2N_10_EPOCH1 = np.sqrt(0.8 ** 2 + 0.7 ** 2 + 0.1 ** 2)


def scripted_records(shuffle: bool = False) -> pd.DataFrame:
    rows = []
    for i, pattern in CORRECT.items():
        for epoch, right in enumerate(pattern):
            margin = MARGINS_10[epoch] if i == 10 else (1.0 if right else -1.0) * (epoch + 1)
            el2n = EL2N_10_EPOCH1 if (i, epoch) == (10, 1) else 0.1 * i + epoch
            rows.append({"sample_index": i, "epoch": epoch, "correct": bool(right), "margin": margin,
                         "el2n": el2n, "loss": float(i + epoch)})
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=0) if shuffle else frame


def test_the_margins_and_el2n_given_are_the_hand_values():
    for logits, margin in zip(LOGITS_10, MARGINS_10):  # the script's margins are the logits' own
        assert logits[0] - max(logits[1:]) == margin
    p = np.array(PROBS_10_EPOCH1)
    assert np.linalg.norm(p - np.eye(3)[0]) == pytest.approx(EL2N_10_EPOCH1)


@pytest.mark.parametrize("shuffle", [False, True])
def test_proxies_equal_the_counts_made_by_hand(shuffle):
    table = dynamics_scores(scripted_records(shuffle), el2n_epoch=1).set_index("sample_index")
    assert list(table.columns) == ["forgetting", "aum", "el2n@epoch1", "learning_time", "1-cum_correct",
                                   "mean_train_loss"] == dynamics_columns(5, 1)
    assert table.index.tolist() == [10, 11, 12, 13, 14]
    # forgetting events: 1->0 transitions; never learned: E = 5, above any learned instance (at most 2)
    assert table["forgetting"].tolist() == [2, 0, 5, 0, 1]
    # learning time: first epoch from which it stays correct; 5 (E) when wrong at the end
    assert table["learning_time"].tolist() == [5, 2, 5, 0, 3]
    assert table["1-cum_correct"].tolist() == pytest.approx([1 - 3 / 5, 1 - 3 / 5, 1.0, 0.0, 1 - 3 / 5])
    # -AUM: minus the mean margin; instance 10 from its logits: (1 - 1.5 + 1 + 1 - 2) / 5 = -0.1
    assert table.loc[10, "aum"] == pytest.approx(0.1)
    assert table.loc[13, "aum"] == pytest.approx(-(1 + 2 + 3 + 4 + 5) / 5)
    assert table.loc[12, "aum"] == pytest.approx(3.0)
    assert table.loc[10, "el2n@epoch1"] == pytest.approx(EL2N_10_EPOCH1)
    assert table.loc[11, "el2n@epoch1"] == pytest.approx(1.1 + 1)
    assert table.loc[14, "mean_train_loss"] == pytest.approx(14 + 2)  # mean of 14..18


def test_el2n_epoch_is_clamped_to_the_last_and_named_after_it():
    table = dynamics_scores(scripted_records(), el2n_epoch=9)
    assert "el2n@epoch4" in table.columns
    assert table.set_index("sample_index").loc[12, "el2n@epoch4"] == pytest.approx(1.2 + 4)


def test_records_with_an_instance_twice_in_an_epoch_are_refused():
    records = scripted_records()
    with pytest.raises(ValueError, match="twice"):
        dynamics_scores(pd.concat([records, records.head(1)]))
