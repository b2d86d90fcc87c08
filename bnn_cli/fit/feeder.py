"""The minibatches: images and labels drawn by one index array per step, in a seeded order."""

from __future__ import annotations

import numpy as np
import pymc as pm

from bnn_cli import seeds
from bnn_cli.models.build import IMAGES_BATCH, LABELS_BATCH


class MinibatchFeeder:
    """Fills the model's `x_batch` / `y_batch` with the next minibatch: rows chosen by one index
    array, so images and labels stay paired; every image once per epoch, in a seeded order."""

    def __init__(self, model: pm.Model, images: np.ndarray, labels: np.ndarray, seed: int):
        self.x_batch = model[IMAGES_BATCH]
        self.y_batch = model[LABELS_BATCH]
        self.images = np.ascontiguousarray(images, dtype=self.x_batch.dtype)
        self.labels = np.asarray(labels, dtype=self.y_batch.dtype)
        self.batch_size = self.x_batch.get_value(borrow=True).shape[0]
        self.rng = seeds.stream(seed, seeds.MINIBATCH_ORDER)
        self.order = np.empty(0, dtype=np.int64)

    def next_indices(self) -> np.ndarray:
        if len(self.order) < self.batch_size:
            self.order = np.concatenate([self.order, self.rng.permutation(len(self.labels))])
        rows, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return rows

    def __call__(self) -> None:
        rows = self.next_indices()
        self.x_batch.set_value(self.images[rows], borrow=True)
        self.y_batch.set_value(self.labels[rows], borrow=True)
