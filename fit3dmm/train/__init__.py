"""Optional training mode: amortise the per-photo fit into a ResNet-50 coefficient regressor (3DDFA-V3).

* :mod:`~fit3dmm.train.resnet` — ResNet-50 with torchvision's parameter names (loads its checkpoints);
* :mod:`~fit3dmm.train.regressor` — :class:`~fit3dmm.train.regressor.FaceRegressor` (crop → coefficients),
  saving/loading, :func:`~fit3dmm.train.regressor.predict_init` (the start of a fit);
* :mod:`~fit3dmm.train.data` — training items, the on-disk observation cache, distillation targets;
* :mod:`~fit3dmm.train.synthetic` — renders of the face model with known coefficients;
* :mod:`~fit3dmm.train.loop` — the training loop (the fitting's loss modules, checkpoints, resume, logs);
* :mod:`~fit3dmm.train.distributed` — torchrun / DistributedDataParallel;
* :mod:`~fit3dmm.train.run` — folders in, ``model.pt`` out (``fit3dmm train`` / ``fit3dmm predict``).
"""
