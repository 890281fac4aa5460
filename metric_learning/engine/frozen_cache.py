"""Cached outputs of frozen backbone stages: train only the rest, from memory.

With ``--freeze_stages N`` the first N stages never change, so what they compute
for a training image depends only on the image as fed to them. Without random
input augmentation there are just two such inputs per image, as it is and
mirrored, and ``FrozenOutputCache`` runs the frozen stages on both once, before
training. Each training step then starts from the cache: neither decoding nor
the frozen stages' forward pass is paid again (``--cache_frozen True``).

Pad + crop and random erasing change the input at every visit and so cannot be
cached; the cache refuses them rather than silently training without them. Flip
keeps its probability: a batch slot takes the mirrored entry with ``flip_prob``.

While the backbone is in training mode with ``frozen_outputs_cached`` set, its
trunk takes these cached maps as input (``backbones._trunk_forward``); in eval
mode it takes images as always, so periodic evaluation and export are unchanged.
"""
import time

import numpy as np
import paddle


class FrozenOutputCache:
    """Frozen-stage outputs of every image of ``dataset`` and of its mirror image.

    Acts as the dataset *and* the transform of a ``trainer.BatchStream``:
    ``load_image(i)`` gives image i's two cached maps, ``labels`` are the dataset's,
    and calling the cache picks one of the two maps (mirrored with ``flip_prob``).
    """

    def __init__(self, dataset, transform, backbone, flip_prob=0.5, batch_size=64, log=print):
        if not backbone.num_frozen_units:
            raise ValueError("--cache_frozen needs --freeze_stages N > 0: there is nothing frozen to cache")
        if getattr(transform, "augment", None):
            raise ValueError("--cache_frozen needs a transform without random augmentation; got %s"
                             % ", ".join(type(op).__name__ for op in transform.augment))
        self.labels = dataset.labels
        self.flip_prob = float(flip_prob)
        frozen_units = backbone.trunk_units[:backbone.num_frozen_units]
        start = time.time()
        self.maps = None  # [N, 2 (as is, mirrored), C, h, w], allocated once the map shape is known
        for layer in backbone.frozen_layers:  # inference mode, as in training (no Layer.eval(): it is global)
            layer.training = False
        with paddle.no_grad():
            for first in range(0, len(dataset), batch_size):
                images = np.stack([transform(dataset.load_image(i))
                                   for i in range(first, min(first + batch_size, len(dataset)))])
                pair = paddle.to_tensor(np.concatenate([images, images[:, :, :, ::-1]]))
                for unit in frozen_units:
                    pair = unit(pair)
                maps = pair.numpy()
                if self.maps is None:
                    # One allocation, filled in place: collecting chunks and concatenating them would
                    # hold the cache twice at the end (2 x 13.6 GB for OSNet_x0_25's stage 2 on Market).
                    self.maps = np.empty((len(dataset), 2) + maps.shape[1:], dtype=maps.dtype)
                self.maps[first:first + len(images), 0] = maps[:len(images)]
                self.maps[first:first + len(images), 1] = maps[len(images):]
        backbone.frozen_outputs_cached = True
        log("cached the frozen stages' output of %d images and their mirror images: %s float32, %.0f MB, %.1f s"
            % (len(self.maps), "x".join(map(str, self.maps.shape[1:])), self.maps.nbytes / 2 ** 20,
               time.time() - start))

    def __len__(self):
        return len(self.maps)

    def load_image(self, index):
        return self.maps[index]

    def __call__(self, maps, rng):
        return maps[1] if self.flip_prob > 0 and rng.random() < self.flip_prob else maps[0]
