"""Fitting: PyMC's ADVI objective and its schedules (`advi`), the minibatches (`feeder`), K
optimizer steps per call (`steppers`), the one loop (`loop`) and the work between its blocks
(`callbacks`, `diagnostics`). PyTensor's backend and rewrites live in `bnn_cli.engine`."""
