"""Batch samplers with an exactly resumable, distributed-aware epoch plan.

Both samplers yield lists of dataset indices (usable as ``paddle.io.DataLoader(batch_sampler=...)``
or iterated directly) and share one state API:

- epoch ``e`` is a fixed plan drawn from ``np.random.default_rng((seed, e))``: every rank
  computes the same global plan and takes batches ``rank, rank + world_size, ...`` of it, so the
  ranks get disjoint shares and the same number of batches;
- ``state_dict()`` -> ``{"seed", "epoch", "position", "world_size", "num_samples"}`` where
  ``position`` counts the batches already handed out in ``epoch`` (after the last batch of an
  epoch it reads ``epoch + 1, position 0``); ``set_state_dict()`` makes the next iteration yield
  exactly the remaining batches of that epoch, then the following epochs as usual.
  A loader that reads ahead should capture the state alongside each batch it takes (as
  ``trainer.BatchStream`` does), not when the training step consumes it;
- each new iteration continues where the last one stopped: after a full epoch it starts the next.
"""
import numpy as np
import paddle


class _EpochPlanSampler(paddle.io.Sampler):
    """Shared machinery; subclasses implement ``_global_plan(rng)`` returning a list of index
    arrays whose length is a multiple of ``world_size``."""

    def __init__(self, num_samples, seed, rank, world_size):
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError("need 0 <= rank < world_size, got rank %r, world_size %r" % (rank, world_size))
        if seed < 0:
            raise ValueError("--seed must be >= 0, got %r" % seed)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.position = 0
        self._cached_epoch, self._cached_batches = None, None

    def _global_plan(self, rng):
        raise NotImplementedError

    def epoch_batches(self, epoch):
        """This rank's batches of ``epoch`` (a list of int lists), recomputed deterministically."""
        if self._cached_epoch != epoch:
            plan = self._global_plan(np.random.default_rng((self.seed, epoch)))
            self._cached_batches = [batch.tolist() for batch in plan[self.rank::self.world_size]]
            self._cached_epoch = epoch
        return self._cached_batches

    def _advance_past_finished_epoch(self):
        if self.position >= len(self.epoch_batches(self.epoch)):
            self.epoch, self.position = self.epoch + 1, 0

    def __iter__(self):
        self._advance_past_finished_epoch()
        epoch = self.epoch
        batches = self.epoch_batches(epoch)
        while self.epoch == epoch and self.position < len(batches):
            batch = batches[self.position]
            # Count the batch before handing it out: a state taken right after receiving it
            # must resume with the next one.
            self.position += 1
            yield batch

    def __len__(self):
        """Batches not yet handed out of the current epoch (all of the next one once it is finished),
        i.e. what an iteration started now yields: a resumed epoch is shorter."""
        remaining = len(self.epoch_batches(self.epoch)) - self.position
        return remaining if remaining > 0 else len(self.epoch_batches(self.epoch + 1))

    def state_dict(self):
        epoch, position = self.epoch, self.position
        if position >= len(self.epoch_batches(epoch)):
            epoch, position = epoch + 1, 0
        return {"seed": self.seed, "epoch": epoch, "position": position,
                "world_size": self.world_size, "num_samples": self.num_samples}

    def set_state_dict(self, state):
        """Restore a ``state_dict()``; the seed comes from the state so the epoch plan is the same."""
        for key in ("world_size", "num_samples"):
            if state[key] != getattr(self, key):
                raise ValueError("sampler state was saved with %s=%r but this run has %r; cannot resume the "
                                 "same batches" % (key, state[key], getattr(self, key)))
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self._cached_epoch = None
        if not 0 <= self.position <= len(self.epoch_batches(self.epoch)):
            raise ValueError("sampler state position %d is outside epoch %d (%d batches)"
                             % (self.position, self.epoch, len(self.epoch_batches(self.epoch))))


class RandomBatchSampler(_EpochPlanSampler):
    """Shuffled fixed-size batches for classification-only training.

    Each epoch is a fresh permutation of ``range(num_samples)`` cut into ``batch_size`` batches;
    ``batch_size`` is per rank. The tail that does not fill a batch on every rank is dropped
    (fewer than ``batch_size * world_size`` samples; a different tail each epoch).
    """

    def __init__(self, num_samples, batch_size, seed=0, rank=0, world_size=1):
        super().__init__(num_samples, seed, rank, world_size)
        if batch_size < 1:
            raise ValueError("--train_batch_size must be >= 1, got %r" % batch_size)
        self.batch_size = int(batch_size)
        self.batches_per_epoch = self.num_samples // (self.batch_size * self.world_size) * self.world_size
        if self.batches_per_epoch == 0:
            raise ValueError("%d training images cannot fill one batch of --train_batch_size %d on each of %d ranks"
                             % (self.num_samples, self.batch_size, self.world_size))

    def _global_plan(self, rng):
        order = rng.permutation(self.num_samples)[: self.batches_per_epoch * self.batch_size]
        return list(order.reshape(self.batches_per_epoch, self.batch_size))


class PKBatchSampler(_EpochPlanSampler):
    """P identities x K images per batch (Hermans et al. 2017), for pair losses.

    ``labels[i]`` is the identity of dataset item ``i``; ``batch_size`` (per rank) must be a
    multiple of ``samples_each_class`` = K, and P = batch_size / K. Each batch is P blocks of K
    consecutive indices, one block per identity, P distinct identities.

    An epoch: each identity's images are shuffled and cut into floor(n / K) blocks of K (the
    n mod K left over differ each epoch). An identity with n < K images gets one block holding all
    of them plus K - n drawn again with replacement (1 image and K = 4 -> 4 copies of it): never
    a short block. Batches take P distinct identities at a time, chosen with probability
    proportional to their remaining blocks so that large identities do not pile up at the end.
    When fewer than P identities have blocks left, the last batch holds one block of each of them
    and is filled with fresh blocks of other random identities; hence every identity appears at
    least once per epoch. For ``world_size`` > 1 the plan is padded with fresh random batches to a
    multiple of ``world_size``. The number of batches can differ slightly from epoch to epoch.
    """

    def __init__(self, labels, batch_size, samples_each_class, seed=0, rank=0, world_size=1):
        labels = np.asarray(labels)
        super().__init__(len(labels), seed, rank, world_size)
        if samples_each_class < 1:
            raise ValueError("--samples_each_class must be >= 1, got %r" % samples_each_class)
        if batch_size < 1 or batch_size % samples_each_class:
            raise ValueError("--train_batch_size (%r) must be a positive multiple of --samples_each_class (%r)"
                             % (batch_size, samples_each_class))
        self.batch_size = int(batch_size)
        self.samples_each_class = int(samples_each_class)
        self.identities_per_batch = self.batch_size // self.samples_each_class
        identities, inverse = np.unique(labels, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        self._indices_of = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
        if len(identities) < self.identities_per_batch:
            raise ValueError("--train_batch_size / --samples_each_class = %d identities per batch, but the data has "
                             "only %d identities" % (self.identities_per_batch, len(identities)))

    def _fill_up(self, rng, images):
        """``images`` (already shuffled) padded to K by drawing from them with replacement."""
        missing = self.samples_each_class - len(images)
        return np.concatenate([images, rng.choice(images, missing)]) if missing > 0 else images

    def _identity_blocks(self, rng, images):
        shuffled = rng.permutation(images)
        k = self.samples_each_class
        if len(shuffled) < k:
            return [self._fill_up(rng, shuffled)]
        return list(shuffled[: len(shuffled) // k * k].reshape(-1, k))

    def _fresh_block(self, rng, identity):
        images = self._indices_of[identity]
        k = self.samples_each_class
        return rng.choice(images, k, replace=False) if len(images) >= k else self._fill_up(rng, rng.permutation(images))

    def _filled_batch(self, rng, blocks, used_identities):
        """``blocks`` completed to P blocks with fresh blocks of identities not in ``used_identities``."""
        others = np.setdiff1d(np.arange(len(self._indices_of)), used_identities)
        extra = rng.choice(others, self.identities_per_batch - len(blocks), replace=False)
        return np.concatenate(list(blocks) + [self._fresh_block(rng, identity) for identity in extra])

    def _global_plan(self, rng):
        blocks = [self._identity_blocks(rng, images) for images in self._indices_of]
        remaining = np.array([len(b) for b in blocks])
        p = self.identities_per_batch
        plan = []
        while np.count_nonzero(remaining) >= p:
            available = np.flatnonzero(remaining)
            chosen = rng.choice(available, p, replace=False, p=remaining[available] / remaining[available].sum())
            remaining[chosen] -= 1
            plan.append(np.concatenate([blocks[identity][remaining[identity]] for identity in chosen]))
        leftover = np.flatnonzero(remaining)
        if len(leftover):
            plan.append(self._filled_batch(rng, [blocks[i][remaining[i] - 1] for i in leftover], leftover))
        while len(plan) % self.world_size:
            plan.append(self._filled_batch(rng, [], []))
        return plan
