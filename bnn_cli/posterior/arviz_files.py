"""predictive.nc: a run's posterior predictive as an ArviZ `InferenceData` (netCDF).

Groups, as ArviZ names them:
- `predictions`: `probs` (chain, draw, image, class), the class probabilities of each posterior
  draw (one chain: the draws are independent draws from the mean-field approximation);
- `predictions_constant_data`: `label` (image), the true classes;
- `posterior` (hierarchical runs only): `<tensor>_scale` (chain, draw), each layer's prior scale.
The `image` coordinate is the image's position in the evaluated split (`test`: the dataset's
test file; `val`: the last `data.val_size` training images), named in the file's attributes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bnn_cli.atomic import atomic_write_bytes

FILE_NAME = "predictive.nc"


def predictive_idata(
    probs: np.ndarray,
    labels: np.ndarray,
    split: str,
    dataset: str,
    scale_draws: dict[str, np.ndarray] | None = None,
) -> Any:
    """The InferenceData described above, from `probs` (draws, images, classes)."""
    import arviz as az  # lazy: imports ArviZ

    n_images, n_classes = probs.shape[1:]
    coords = {"image": np.arange(n_images), "class": np.arange(n_classes)}
    dims = {"probs": ["image", "class"], "label": ["image"]}
    idata = az.from_dict(
        posterior={name: d[None] for name, d in scale_draws.items()} if scale_draws else None,
        predictions={"probs": np.asarray(probs)[None]},
        predictions_constant_data={"label": np.asarray(labels)},
        coords=coords,
        dims=dims,
        pred_coords=coords,
        pred_dims=dims,
    )
    for group in idata.groups():
        idata[group].attrs.update(
            dataset=dataset,
            split=split,
            image=f"the image's position in the {split} split of {dataset}",
            drawn_by="bnn, from PyMC's mean-field ADVI approximation",
        )
    return idata


def write_predictive(
    run_dir: Path,
    probs: np.ndarray,
    labels: np.ndarray,
    split: str,
    dataset: str,
    scale_draws: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write `<run_dir>/predictive.nc` atomically (the netCDF goes to a scratch file first,
    then into place like every file of a run); returns its path."""
    idata = predictive_idata(probs, labels, split, dataset, scale_draws)
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / FILE_NAME
        idata.to_netcdf(str(local))
        data = local.read_bytes()
    path = Path(run_dir) / FILE_NAME
    atomic_write_bytes(path, data)
    return path
