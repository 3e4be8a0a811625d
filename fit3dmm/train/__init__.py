"""Optional training mode: amortise the per-photo fit into a ResNet-50 coefficient regressor (3DDFA-V3).

The network itself (:class:`~fit3dmm.models.regressor.FaceRegressor`, ResNet-50) is a model and lives in
:mod:`fit3dmm.models`; this package trains it:

* :mod:`~fit3dmm.train.objective` — the fitting's objective on predicted coefficients, plus supervision;
* :mod:`~fit3dmm.train.data` — training items, the on-disk observation cache, distillation targets;
* :mod:`~fit3dmm.train.synthetic` — synthetic items (renders of the face model with known coefficients);
* :mod:`~fit3dmm.train.evaluation` — validation metrics, BatchNorm recalibration;
* :mod:`~fit3dmm.train.logs` and :mod:`~fit3dmm.train.checkpoints` — the run folder's files, resume;
* :mod:`~fit3dmm.train.loop` — the training loop;
* :mod:`~fit3dmm.train.distributed` — torchrun / DistributedDataParallel;
* :mod:`~fit3dmm.train.run` — folders in, ``model.pt`` out (``fit3dmm train`` / ``fit3dmm predict``).
"""
