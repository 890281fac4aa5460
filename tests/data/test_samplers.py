"""P x K and random batch samplers: layout, coverage, rank shares, determinism, exact resume."""
import itertools

import numpy as np
import paddle
import pytest

from metric_learning.data.samplers import PKBatchSampler, RandomBatchSampler

# Identity sizes 1, 2, 5, 8, 4, 3, 6 (29 images, shuffled so identities are not contiguous).
SIZES = [1, 2, 5, 8, 4, 3, 6]
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(len(SIZES)) * 10, SIZES))


def blocks_of(batch, k):
    return np.asarray(batch).reshape(-1, k)


def test_batch_size_must_be_a_multiple_of_k():
    with pytest.raises(ValueError, match=r"--train_batch_size \(10\).*--samples_each_class \(4\)"):
        PKBatchSampler(LABELS, batch_size=10, samples_each_class=4)


def test_more_identities_per_batch_than_the_data_has():
    with pytest.raises(ValueError, match="only 7 identities"):
        PKBatchSampler(LABELS, batch_size=32, samples_each_class=4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pk_layout_with_uneven_identity_sizes(seed):
    sampler = PKBatchSampler(LABELS, batch_size=8, samples_each_class=4, seed=seed)
    for epoch in range(3):
        batches = list(sampler)
        assert sampler.state_dict()["epoch"] == epoch + 1
        assert len(batches) == len(sampler.epoch_batches(epoch)) >= 1
        for batch in batches:
            assert len(batch) == 8
            block_labels = LABELS[blocks_of(batch, 4)]
            assert (block_labels == block_labels[:, :1]).all()  # one identity per block of K
            assert len(set(block_labels[:, 0])) == 2  # P = 2 distinct identities
            for block in blocks_of(batch, 4):
                n = SIZES[LABELS[block[0]] // 10]
                if n >= 4:
                    assert len(set(block)) == 4  # no repeats when the identity has K images
                else:
                    assert set(block) == set(np.flatnonzero(LABELS == LABELS[block[0]]))  # all its images
        epoch_identities = {LABELS[i] for batch in batches for i in batch}
        assert epoch_identities == set(LABELS)  # every identity at least once per epoch


def test_identity_with_one_image_fills_its_block_with_copies():
    labels = np.array([0, 1, 1, 1, 1, 2, 2, 2, 2])
    sampler = PKBatchSampler(labels, batch_size=8, samples_each_class=4)
    blocks = [block for batch in sampler for block in blocks_of(batch, 4)]
    assert [0, 0, 0, 0] in [list(b) for b in blocks]
    assert all(list(b) == [0, 0, 0, 0] for b in blocks if labels[b[0]] == 0)


def test_large_identities_contribute_one_block_per_k_images():
    # 3 identities x 8 images, K = 4, P = 3: 2 blocks each, drained in exactly 2 batches of 12
    labels = np.repeat([0, 1, 2], 8)
    batches = list(PKBatchSampler(labels, batch_size=12, samples_each_class=4, seed=5))
    assert len(batches) == 2
    assert sorted(itertools.chain(*batches)) == list(range(24))


def test_same_seed_same_plan_other_seed_other_plan():
    a = list(PKBatchSampler(LABELS, 8, 4, seed=3))
    b = list(PKBatchSampler(LABELS, 8, 4, seed=3))
    c = list(PKBatchSampler(LABELS, 8, 4, seed=4))
    assert a == b
    assert a != c


def test_ranks_get_disjoint_equal_shares_of_the_epoch_plan():
    single = PKBatchSampler(LABELS, 8, 4, seed=9).epoch_batches(0)
    ranks = [PKBatchSampler(LABELS, 8, 4, seed=9, rank=r, world_size=3) for r in range(3)]
    shares = [list(s) for s in ranks]
    assert len({len(share) for share in shares}) == 1  # same number of batches on every rank
    interleaved = [batch for step in zip(*shares) for batch in step]
    # the rank shares are the single-process plan dealt round-robin (plus padding batches at the end)
    assert interleaved[:len(single)] == single
    assert len(interleaved) - len(single) < 3
    for padding in interleaved[len(single):]:
        assert len(padding) == 8 and len(set(LABELS[blocks_of(padding, 4)][:, 0])) == 2


@pytest.mark.parametrize("make", [
    lambda **kw: PKBatchSampler(LABELS, 8, 4, seed=11, **kw),
    lambda **kw: RandomBatchSampler(len(LABELS), 4, seed=11, **kw),
])
def test_resume_yields_exactly_the_remaining_batches(make):
    reference = make()
    uninterrupted = list(reference) + list(reference)  # epochs 0 and 1

    interrupted = make()
    iterator = iter(interrupted)
    taken = [next(iterator) for _ in range(3)]
    state = interrupted.state_dict()
    assert (state["epoch"], state["position"]) == (0, 3)

    resumed = make()
    resumed.set_state_dict(state)
    assert len(resumed) == len(reference.epoch_batches(0)) - 3
    rest_of_epoch = list(resumed)
    assert taken + rest_of_epoch + list(resumed) == uninterrupted


def test_state_after_the_last_batch_points_to_the_next_epoch():
    sampler = PKBatchSampler(LABELS, 8, 4, seed=1)
    batches = sampler.epoch_batches(0)
    iterator = iter(sampler)
    for _ in batches:
        next(iterator)
    state = sampler.state_dict()  # taken right after the last batch, before the loop notices the end
    assert (state["epoch"], state["position"]) == (1, 0)
    resumed = PKBatchSampler(LABELS, 8, 4, seed=1)
    resumed.set_state_dict(state)
    assert list(resumed) == sampler.epoch_batches(1)


def test_resume_with_another_world_size_is_refused():
    state = PKBatchSampler(LABELS, 8, 4, world_size=2).state_dict()
    with pytest.raises(ValueError, match="world_size"):
        PKBatchSampler(LABELS, 8, 4).set_state_dict(state)


def test_random_batch_sampler_epoch_is_a_permutation_split_over_ranks():
    ranks = [RandomBatchSampler(10, batch_size=2, seed=0, rank=r, world_size=2) for r in range(2)]
    shares = [list(s) for s in ranks]
    assert [len(s) for s in shares] == [2, 2]  # 10 // (2 * 2) = 2 batches per rank; 2 samples dropped
    indices = [i for share in shares for batch in share for i in batch]
    assert len(indices) == len(set(indices)) == 8
    assert list(ranks[0]) != shares[0]  # the next epoch is another permutation


def test_random_batch_sampler_too_small_dataset():
    with pytest.raises(ValueError, match="--train_batch_size 8"):
        RandomBatchSampler(10, batch_size=8, world_size=2)


def test_works_as_a_paddle_dataloader_batch_sampler():
    class Items(paddle.io.Dataset):
        def __getitem__(self, i):
            return np.array([i], dtype="float32"), np.int64(LABELS[i])

        def __len__(self):
            return len(LABELS)

    sampler = PKBatchSampler(LABELS, 8, 4, seed=2)
    loader = paddle.io.DataLoader(Items(), batch_sampler=sampler, num_workers=0)
    assert len(loader) == len(sampler.epoch_batches(0))
    got = [(x.numpy()[:, 0].astype(int).tolist(), y.numpy().tolist()) for x, y in loader]
    expected = sampler.epoch_batches(0)
    assert [g[0] for g in got] == expected
    assert [g[1] for g in got] == [LABELS[b].tolist() for b in expected]
